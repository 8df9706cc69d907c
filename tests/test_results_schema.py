"""keras_edd.results_schema: results.json as typed objects, one writer, old files load."""

import glob
import json
import os

import pytest

from conftest import REPO
from keras_edd import files, results_schema, stats
from keras_edd.evaluation import metrics
from keras_edd.reporting import readme_tables
from keras_edd.results_schema import (AttackRates, CleanRates, Evaluation, Results,
                                      SCHEMA_VERSION, migrate)

PAPER = os.path.join(REPO, "results", "paper", "results.json")
README = os.path.join(REPO, "README.md")
paper_only = pytest.mark.skipif(not os.path.isfile(PAPER), reason="no results/paper run")


def _rates(count, recovered, detected, attack_failed=None):
    return {"count": count, "recovered": recovered, "detected": detected,
            "misclassified": round(1 - recovered - detected, 6), "attack_failed": attack_failed}


def _entry(**changes):
    entry = {"setting": "whitebox", "source": "f", "target": "f", "attack": "fgsm",
             "variant": "plain", "parameter": "eps", "value": 0.2, "num_examples": 4,
             "filtered": _rates(4, 0.25, 0.0, 0.25), "unfiltered": _rates(4, 0.25, 0.0, 0.25),
             "params": {"eps": 0.2}, "success": 0.75, "attack_seconds": 0.5,
             "norms": {"mean_l2": 1.0}}
    entry.update(changes)
    return entry


def _without_intervals(value):
    """`value` without the derived Wilson intervals (keys ending in 'wilson95')."""
    if isinstance(value, dict):
        return {k: _without_intervals(v) for k, v in value.items() if not k.endswith("wilson95")}
    if isinstance(value, list):
        return [_without_intervals(v) for v in value]
    return value


def _legacy():
    """A version-0 results dict (no schema_version), as evaluations wrote before the schema."""
    return {"kind": "whitebox", "models": {"f": {
        "role": "target", "outputs": 10, "outlier_class": None, "path": "f.keras",
        "extra": False, "checks": {"zero_gradient_fraction": 0.0},
        "clean_test_set": {"count": 8, "accuracy": 0.875, "detected": 0.0,
                           "misclassified": 0.125},
        "clean_attacked": {"count": 4, "accuracy": 1.0, "detected": 0.0,
                           "misclassified": 0.0}}},
        "evaluations": [_entry()], "num_examples": {"fgsm": 4}, "warnings": ["w"],
        "settings": {"preset": "paper"}, "a_future_key": [1, 2]}


def test_a_legacy_dict_loads_typed_and_writes_back_with_its_version():
    results = Results.from_dict(_legacy())
    entry = results.evaluations[0]
    assert isinstance(entry, Evaluation) and isinstance(entry.filtered, AttackRates)
    assert entry.filtered.count == 4 and entry.filtered.attack_failed == 0.25
    clean = results.models["f"].clean_test_set
    assert isinstance(clean, CleanRates) and clean.accuracy == 0.875
    assert results.models["f"].get("extra") is False  # a record's own "extra" key survives
    data = results.to_dict()
    assert data["schema_version"] == SCHEMA_VERSION
    # Everything the legacy dict held comes back unchanged; only the version and the
    # (derived) intervals are added.
    assert {k: v for k, v in _without_intervals(data).items() if k != "schema_version"} == \
        {**_legacy(), "sweeps": [], "worst_case": []}
    assert migrate(data) == data


def test_a_partial_entry_reads_missing_optional_fields_as_none():
    entry = _entry(filtered={"count": 0, "recovered": None, "detected": None,
                             "misclassified": None})
    del entry["norms"], entry["attack_seconds"]
    typed = Evaluation.from_dict(entry)
    assert typed.norms is None and typed.attack_seconds is None
    assert typed.filtered.attack_failed is None
    assert typed.to_dict()["filtered"]["attack_failed"] is None


@pytest.mark.parametrize("change, message", [
    (lambda d: d["evaluations"][0].pop("target"), r"evaluations\[0\]: lacks the field 'target'"),
    (lambda d: d["evaluations"][0]["filtered"].pop("count"),
     r"evaluations\[0\].filtered: lacks the field 'count'"),
    (lambda d: d["evaluations"][0]["unfiltered"].update(count=-1),
     r"evaluations\[0\].unfiltered.count=-1: expected an integer >= 0"),
    (lambda d: d["models"].update(g=[1]), r"models.g: expected a JSON object, got list"),
    (lambda d: d.update(schema_version=SCHEMA_VERSION + 1),
     rf"schema_version={SCHEMA_VERSION + 1}: this keras_edd reads versions 0 to"),
])
def test_bad_results_raise_one_line_naming_the_field(change, message):
    data = _legacy()
    change(data)
    with pytest.raises(ValueError, match=message) as raised:
        Results.from_dict(data)
    assert "\n" not in str(raised.value)


def test_the_one_writer_writes_the_current_version(tmp_path):
    path = tmp_path / "results.json"
    written = results_schema.write_results(str(path), _legacy())
    assert files.read_json(path) == written and written["schema_version"] == SCHEMA_VERSION
    assert results_schema.read_results(str(path)) == Results.from_dict(written)


def test_typed_objects_are_frozen():
    results = Results.from_dict(_legacy())
    with pytest.raises(AttributeError):
        results.evaluations[0].filtered.count = 3


@paper_only
def test_the_published_run_is_in_the_current_schema_and_its_readme_blocks_unchanged():
    """The migration of results/paper/results.json changed its format, not a number: the
    README's generated blocks are byte-identical from the migrated file and from the file
    read as a legacy (version 0) dict."""
    data = files.read_json(PAPER)
    assert data["schema_version"] == SCHEMA_VERSION
    assert migrate(data) == data  # nothing left to migrate
    legacy = {k: v for k, v in _without_intervals(data).items() if k != "schema_version"}
    text = open(README).read()
    for source in (data, legacy):
        assert readme_tables.update_readme(text, Results.from_dict(source)) == text
    blocks = readme_tables.readme_blocks(data)
    assert blocks == readme_tables.readme_blocks(legacy)
    for name, body in blocks.items():
        begin = readme_tables.begin_marker(name)
        assert f"{begin}\n{body}\n{readme_tables.end_marker(name)}" in text, name
    assert json.dumps(data, indent=2, sort_keys=True) + "\n" == open(PAPER).read()


def test_every_rate_is_written_with_its_wilson_interval_over_its_n():
    data = Results.from_dict(_legacy()).to_dict()
    entry = data["evaluations"][0]
    # 1 of 4 recovered, 3 of 4 misclassified, 0 of 4 detected.
    for name, k in (("recovered", 1), ("misclassified", 3), ("detected", 0),
                    ("attack_failed", 1)):
        assert entry["filtered"]["wilson95"][name] == list(stats.wilson_interval(k, 4)), name
    assert entry["success_wilson95"] == list(stats.wilson_interval(3, 4))
    clean = data["models"]["f"]["clean_test_set"]["wilson95"]
    assert clean["accuracy"] == list(stats.wilson_interval(7, 8))
    assert "recovered" not in clean
    empty = Evaluation.from_dict(_entry(filtered={"count": 0, "recovered": None,
                                                   "detected": None, "misclassified": None}))
    assert empty.to_dict()["filtered"]["wilson95"]["recovered"] is None
    # Intervals are derived: a stale one in the input is replaced, never trusted.
    stale = _legacy()
    stale["evaluations"][0]["filtered"]["wilson95"] = {"recovered": [0.9, 1.0]}
    assert Results.from_dict(stale).to_dict() == data


def test_an_interval_needs_a_rate_in_the_unit_interval_and_a_count():
    assert stats.interval_of(None, 4) is None and stats.interval_of(0.5, 0) is None
    assert stats.interval_of(1 - 0.9 - 0.1, 10) == stats.wilson_interval(0, 10)
    with pytest.raises(ValueError, match=r"rate=1.5: expected a fraction in \[0, 1\]"):
        stats.interval_of(1.5, 4)
    with pytest.raises(ValueError, match=r"rate=1.5: expected a fraction"):
        Evaluation.from_dict(_entry(filtered=_rates(4, 1.5, 0.0))).to_dict()


def test_the_masking_bound_is_the_one_wilson_formula():
    """metrics.success_upper_bound (one-sided 95 %) is the upper end of keras_edd.stats'
    two-sided interval at z = 1.645: one implementation."""
    for successes, n in ((50, 100), (16, 17), (0, 9), (9, 9)):
        rates = {"count": n, "recovered": 1 - successes / n}
        assert metrics.success_upper_bound(rates) == pytest.approx(
            stats.wilson_interval(successes, n, z=1.645)[1], abs=1e-12)


def _holds(big, small, where="results"):
    """Every key and value of `small` is in `big` (lists item by item)."""
    if isinstance(small, dict):
        assert isinstance(big, dict), where
        for key, value in small.items():
            assert key in big, f"{where}.{key} lost"
            _holds(big[key], value, f"{where}.{key}")
    elif isinstance(small, list):
        assert isinstance(big, list) and len(big) == len(small), where
        for i, (b, s) in enumerate(zip(big, small)):
            _holds(b, s, f"{where}[{i}]")
    else:
        assert big == small and type(big) is type(small), where


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(REPO, "results", "**",
                                                               "results.json"), recursive=True)))
def test_every_committed_results_file_loads_and_migrates_without_losing_a_number(path):
    """The seed runs under results/seeds are version 0 (written before the schema)."""
    data = files.read_json(path)
    migrated = migrate(data)
    _holds(migrated, {k: v for k, v in data.items() if k != "schema_version"})
    assert migrate(migrated) == migrated
