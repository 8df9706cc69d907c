"""The figures: empty inputs write nothing; the ROC panel, the sweep panels and the bar
panels say what they plot and stay legible (font sizes, no overlapping labels)."""

import os

import matplotlib.text
import pytest

from keras_edd.reporting import figures


def test_plots_skip_empty_inputs(tmp_path):
    assert figures.plot_whitebox([], str(tmp_path / "a.png")) is False
    assert figures.plot_blackbox([], str(tmp_path / "d.png"), note="n") is False
    assert figures.plot_sweeps([], str(tmp_path / "b.png")) is False
    assert figures.plot_roc({"entries": []}, str(tmp_path / "c.png"),
                            str(tmp_path / "c.pdf")) is False
    assert os.listdir(tmp_path) == []


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions would save, kept open instead of written."""
    figs = []
    monkeypatch.setattr(figures, "_save_png_and_pdf", lambda fig, *a: figs.append(fig))
    monkeypatch.setattr(figures.pyplot(), "close", lambda fig: None)
    return figs


def _roc(auroc):
    """A two-step ROC curve whose trapezoid area is `auroc`."""
    return {"fpr": [0.0, 0.0, 1.0], "tpr": [0.0, 2 * auroc - 1, 1.0]} if auroc >= 0.5 else \
        {"fpr": [0.0, 1 - 2 * auroc, 1.0], "tpr": [0.0, 0.0, 1.0]}


def _detection_entry(attack, variant, auroc, target="extended", setting="whitebox",
                     source="extended"):
    scores = {score: {"auroc": auroc, "roc": _roc(auroc), "at_fpr": {}}
              for score in ("softmax", "margin")}
    return {"setting": setting, "target": target, "source": source, "attack": attack,
            "variant": variant, "count": 10, "num_examples": 10, **scores}


# Eight attacks; the adaptive variant is the harder one to detect, except for "e" whose
# adaptive attack changed nothing (the same curve).
AUROCS = {"a": (0.9, 0.6), "b": (0.95, 0.05), "c": (0.7, 0.5), "d": (0.8, 0.3),
          "e": (0.99, 0.99), "f": (0.85, 0.7), "g": (0.6, 0.4), "h": (0.75, 0.2)}


def _detection(targets=("extended",)):
    return {"entries": [_detection_entry(attack, variant, auroc, target=target, source=target)
                        for target in targets for attack, pair in AUROCS.items()
                        for variant, auroc in zip(("plain", "adaptive"), pair)]}


def _curves(ax):
    return [line for line in ax.get_lines() if "AUROC" in line.get_label()]


def test_roc_draws_a_panel_per_target_with_at_most_six_labelled_curves(tmp_path, drawn):
    assert figures.plot_roc(_detection(("extended", "other")), str(tmp_path / "r.png"),
                            str(tmp_path / "r.pdf")) is True
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 2
    for ax, target in zip(panels, ("extended", "other")):
        curves = _curves(ax)
        assert 0 < len(curves) <= 6
        labels = [line.get_label() for line in curves]
        # Ranked by the lowest AUROC of each attack: b 0.05 (hardest), h 0.2, d 0.3, g 0.4,
        # c 0.5, a 0.6, f 0.7, e 0.99 (easiest): hardest, median (index 4) and easiest.
        assert labels == ["b, plain (AUROC 0.95)", "b, adaptive (AUROC 0.05)",
                          "c, plain (AUROC 0.70)", "c, adaptive (AUROC 0.50)",
                          "e, plain (AUROC 0.99)", "e, adaptive (AUROC 0.99, the same curve)"]
        # An attack is one colour, its variants solid (plain) and dashed (adaptive).
        assert curves[0].get_color() == curves[1].get_color() != curves[2].get_color()
        assert [line.get_linestyle() for line in curves[:2]] == ["-", "--"]
        assert ax.get_xlabel() == "false detections: clean test inputs flagged (%)"
        assert ax.get_ylabel() == "adversarial examples detected (%)"
        assert ax.get_title().startswith(f"target {target}, white-box\n3 of 8 attacks")
        assert ax.get_xlim() == (0, 100)
        legend = [t.get_text() for t in ax.get_legend().get_texts()]
        assert legend[:6] == labels
    texts = [t.get_text() for t in fig.findobj(matplotlib.text.Text)]
    title = next(t for t in texts if t.startswith("The outlier class as a detector"))
    assert "outlier logit minus the largest class logit" in title
    assert not any("z_n" in t or "max_" in t for t in texts)


def test_roc_curves_keep_every_attack_when_few_and_fall_back_to_black_box():
    few = [_detection_entry("x", "plain", 0.9), _detection_entry("y", "plain", 0.6),
           _detection_entry("y", "adaptive", 0.3)]
    chosen, total = figures.roc_curves(few)
    assert total == 2
    assert [(e["attack"], e["variant"]) for e in chosen] == [("y", "plain"), ("y", "adaptive"),
                                                             ("x", "plain")]
    transfer = [_detection_entry("x", "plain", 0.7, setting="blackbox", source="surrogate_D"),
                _detection_entry("x", "plain", 0.8, setting="blackbox", source="J_extended")]
    chosen, total = figures.roc_curves(transfer)
    assert [e["source"] for e in chosen] == ["surrogate_D"] and total == 1
    assert figures.roc_curves([]) == ([], 0)
    with pytest.raises(ValueError, match="score 'logit': not one of the detection scores"):
        figures.roc_curves(few, score="logit")


def _sweep(attack, parameter, values, target="extended", variant="plain"):
    def point(i, value):
        recovered = 1 - (i + 1) / len(values)
        rates = {"count": 10, "recovered": recovered, "detected": 0.1 * i,
                 "misclassified": 1 - recovered - 0.1 * i}
        return {"value": value, "filtered": rates, "unfiltered": rates,
                "success": 1 - recovered}
    return {"target": target, "attack": attack, "variant": variant, "parameter": parameter,
            "num_examples": 10, "points": [point(i, v) for i, v in enumerate(values)]}


def test_sweeps_name_the_budget_of_every_panel_for_any_parameter(tmp_path, drawn):
    sweeps = [_sweep("fgsm", "eps", [0.1, 0.2]), _sweep("jsma", "gamma", [0.05, 0.1]),
              _sweep("cw", "kappa", [0, 10, 20]), _sweep("cw", "steps", [10, 100]),
              _sweep("cw", "kappa", [0, 10, 20], variant="adaptive")]
    assert figures.plot_sweeps(sweeps, str(tmp_path / "s.png"), 0.95) is True
    (fig,) = drawn
    panels = [ax for ax in fig.axes if ax.axison]
    # One panel per (attack, budget): cw swept over kappa and over steps gets two.
    assert [ax.get_title().split("\n")[0] for ax in panels] == [
        "fgsm, budget eps", "jsma, budget Gamma", "cw, budget kappa", "cw, budget steps"]
    assert [ax.get_xlabel() for ax in panels] == [
        "eps (L∞ budget)", "Gamma (max. fraction of pixels changed)", "kappa (CW confidence)",
        "steps"]
    assert len(fig.axes) == 6  # three per row
    for i, ax in enumerate(fig.axes):
        ylabel = ax.get_ylabel()
        if i % 3 == 0 and ax.axison:
            assert "attack success = 1 - recovered (%)" in ylabel and "detected" in ylabel
        else:
            assert ylabel == ""
    kappa = panels[2]
    solid = [line for line in kappa.get_lines() if line.get_linestyle() == "-"]
    assert len(solid) == 2  # plain and adaptive
    assert list(solid[0].get_xdata()) == [0, 10, 20]


def _blackbox_entries():
    def rates(recovered, detected):
        return {"count": 986, "recovered": recovered, "detected": detected,
                "misclassified": 1 - recovered - detected}
    entries = []
    for target in ("undefended", "extended"):
        for source in ("surrogate_U", "surrogate_D", f"J_{target}"):
            for attack in ("fgsm", "pgd", "jsma", "cw", "cw_adam", "square", "apgd_ce",
                           "apgd_t", "any"):
                variants = (("any",) if attack == "any" else ("plain", "adaptive")
                            if source == "surrogate_D" else ("plain",))
                for variant in variants:
                    entries.append({"setting": "blackbox", "target": target, "source": source,
                                    "attack": attack, "variant": variant,
                                    "filtered": rates(0.33, 0.33)})
        entries.append({"setting": "blackbox", "target": target, "source": "any",
                        "attack": "any", "variant": "any", "filtered": rates(0.1, 0.1)})
    return entries


def _overlapping(texts, renderer):
    boxes = [t.get_window_extent(renderer) for t in texts if t.get_text()]
    return [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:] if a.overlaps(b)]


def test_blackbox_text_is_large_enough_and_labels_do_not_overlap(tmp_path, drawn):
    assert figures.plot_blackbox(_blackbox_entries(), str(tmp_path / "b.png")) is True
    (fig,) = drawn
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
    assert min(t.get_fontsize() for t in texts) >= figures.VALUE_FONT >= 6.5
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 8  # 2 targets x (U, D, J, any surrogate)
    for ax in panels:
        assert not _overlapping(ax.texts, renderer), ax.get_title()  # values on the bars
        assert not _overlapping(ax.get_xticklabels(), renderer), ax.get_title()
    # Titles of neighbouring panels do not run into each other.
    assert not _overlapping([ax.title for ax in panels], renderer)
    # The single-bar "any surrogate" column is narrower than the others.
    widths = [ax.get_position().width for ax in panels[:4]]
    assert widths[3] < 0.5 * min(widths[:3])
    assert panels[3].get_title() == "undefended from\nany surrogate"
