"""Cells over training seeds: the names of results/paper and of a seed run meet in one
key, surrogate J is left out, mean and sample sd by hand, the markdown tables."""

import pytest

from keras_edd.reporting import seed_statistics as ss


def entry(setting, source, target, attack, variant, misclassified, count=100, detected=0.0):
    recovered = 1.0 - misclassified - detected
    return {"setting": setting, "source": source, "target": target, "attack": attack,
            "variant": variant, "filtered": {"count": count, "recovered": recovered,
                                             "detected": detected,
                                             "misclassified": misclassified}}


PAPER = {"evaluations": [
    entry("whitebox", "extended", "extended", "fgsm", "plain", 0.4, detected=0.1),
    entry("whitebox", "undefended", "undefended", "fgsm", "plain", 0.9),
    entry("blackbox", "surrogate_U", "extended", "fgsm", "plain", 0.2),
    entry("blackbox", "J_extended", "extended", "fgsm", "plain", 0.3),
    entry("blackbox", "surrogate_D", "distillation", "fgsm", "plain", 0.3)]}


def seed_run(misclassified, setting="whitebox", source="target"):
    return {"evaluations": [entry(setting, source, "target", "fgsm", "plain", misclassified,
                                  count=98, detected=0.2)]}


def test_cells_meet_across_naming_and_j_is_left_out():
    cells = ss.collect(PAPER, "extended", 0)
    ss.collect(seed_run(0.5), "extended", 4, cells)
    ss.collect(seed_run(0.6), "extended", 5, cells)
    ss.collect(seed_run(0.1, "blackbox", "U"), "extended", 4, cells)
    assert set(cells) == {("extended", "white-box", "fgsm", "plain"),
                          ("extended", "U", "fgsm", "plain")}
    table = ss.statistics(cells)
    white = table[("extended", "white-box", "fgsm", "plain")]
    assert white.seeds == (0, 4, 5) and white.counts == (100, 98, 98)
    assert white.mean("misclassified") == pytest.approx(0.5)
    assert white.sd("misclassified") == pytest.approx(0.1)  # sample sd of .4, .5, .6
    assert white.mean("detected") == pytest.approx((0.1 + 0.2 + 0.2) / 3)
    from_u = table[("extended", "U", "fgsm", "plain")]
    assert from_u.seeds == (0, 4) and from_u.mean("misclassified") == pytest.approx(0.15)


def test_a_seed_counted_twice_is_an_error():
    cells = ss.collect(seed_run(0.5), "extended", 4)
    with pytest.raises(ValueError, match="seed 4: two results"):
        ss.collect(seed_run(0.5), "extended", 4, cells)


def test_markdown_tables():
    cells = ss.collect(PAPER, "extended", 0)
    ss.collect(seed_run(0.5), "extended", 4, cells)
    ss.collect(seed_run(0.6), "extended", 5, cells)
    text = ss.rates_table(ss.statistics(cells), "extended", ("fgsm", "cw"))
    lines = text.splitlines()
    assert lines[0] == "| attack | white-box | from U |"
    # white-box: recovered .5, .3, .2 -> 33.3 ± 15.3; detected .1, .2, .2; misclassified 50 ± 10
    assert lines[2] == ("| fgsm (plain) | 33.3 ± 15.3 / 16.7 ± 5.8 / 50.0 ± 10.0 "
                        "| 80.0 / 0.0 / 20.0 (1 seed) |")
    assert len(lines) == 3  # no cw row: no seed has it
    clean = ss.clean_table({"undefended": {0: 0.9865, 4: 0.9847, 5: 0.9863}})
    assert clean.splitlines()[2] == "| f | 98.65 | 98.47 | 98.63 | 98.58 ± 0.10 | 99.19 |"


def test_the_readme_seed_tables_are_the_committed_results():
    """Every README seed block is what tools/study_tables.py renders from results/paper,
    results/seeds and the paper collection's MANIFEST (rerun it after a seed run lands)."""
    import os

    from conftest import REPO, load_tool
    from keras_edd.reporting import readme_tables

    tool = load_tool("study_tables")
    text = open(os.path.join(REPO, "README.md")).read()
    blocks = tool.blocks(REPO)
    assert {"seeds-clean", "seeds-undefended", "seeds-extended", "claim"} <= set(blocks)
    for name, body in blocks.items():
        begin = readme_tables.begin_marker(name, "README.md", tool.TOOL)
        assert f"{begin}\n{body}\n{readme_tables.end_marker(name)}" in text, name
    assert "| f^d | 98.28 |" in blocks["seeds-clean"]  # seed 0 from results/paper


def test_a_stray_folder_under_results_seeds_is_refused():
    with pytest.raises(ValueError, match="'whitebox-extended': expected a seed run"):
        ss.seed_blocks({"evaluations": []}, {"whitebox-extended": {"evaluations": []}}, {})
