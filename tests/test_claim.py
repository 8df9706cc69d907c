"""The paper's small-budget claim: points at or below Figure 1's budgets, recovered +
detected with its Wilson interval, the standing against 60-90 %, the table and verdict."""

import pytest

from keras_edd.reporting import claim
from keras_edd.stats import wilson_interval


def point(value, misclassified, count=400, detected=0.1):
    return {"value": value, "filtered": {"count": count, "misclassified": misclassified,
                                         "detected": detected,
                                         "recovered": 1 - misclassified - detected}}


RESULTS = {"sweeps": [
    {"attack": "fgsm", "variant": "plain", "parameter": "eps",
     "points": [point(0.1, 0.25), point(0.2, 0.5), point(0.3, 0.9)]},
    {"attack": "cw", "variant": "adaptive", "parameter": "kappa",
     "points": [point(0.0, 0.99, detected=0.0), point(7.0, 1.0, detected=0.0)]},
    {"attack": "pgd", "variant": "plain", "parameter": "eps", "points": [point(0.1, 0.9)]}]}


def test_rows_take_the_budgets_up_to_figure_1_with_their_intervals():
    rows = claim.claim_rows(RESULTS)
    assert [(r["attack"], r["value"]) for r in rows] == [
        ("fgsm", 0.1), ("fgsm", 0.2), ("cw", 0.0), ("cw", 7.0)]  # no eps 0.3, no PGD
    fgsm = rows[0]
    assert fgsm["resisted"] == pytest.approx(0.75) and fgsm["n"] == 400
    assert fgsm["interval"] == pytest.approx(wilson_interval(300, 400))
    assert fgsm["standing"] == "within" and not fgsm["figure_1"] and rows[1]["figure_1"]
    assert rows[1]["standing"] == "below"  # 50 % [45, 55]
    assert rows[2]["standing"] == "below" and rows[2]["resisted"] == pytest.approx(0.01)


def test_standing_at_the_edges():
    assert claim._standing((0.55, 0.65)) == "overlaps"
    assert claim._standing((0.91, 0.95)) == "above"
    assert claim._standing((0.6, 0.9)) == "within"


def test_table_and_verdict():
    lines = claim.claim_table(RESULTS).splitlines()
    assert lines[2] == "| fgsm | ε = 0.1 | 400 | 75.0 [70.5, 79.0] within |  |"
    assert lines[3].startswith("| fgsm | ε = 0.2 (Figure 1) | 400 | 50.0 [45.1, 54.9] below")
    assert lines[4] == "| cw | κ = 0 | 400 |  | 1.0 [0.4, 2.5] below |"
    verdict = claim.claim_verdict(RESULTS)  # Figure 1's own budgets are left out
    assert verdict == ("plain attacks: 1 points, recovered + detected 75.0-75.0 % (1 within "
                       "the 60-90 % range); adaptive attacks: 1 points, recovered + detected "
                       "1.0-1.0 % (1 below the 60-90 % range)")


def test_a_sweep_over_another_budget_is_refused():
    bad = {"sweeps": [{"attack": "cw", "variant": "plain", "parameter": "eps", "points": []}]}
    with pytest.raises(ValueError, match="sweep of cw over 'eps': expected 'kappa'"):
        claim.claim_rows(bad)
