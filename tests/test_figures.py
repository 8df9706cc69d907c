"""The figures skip empty inputs and write nothing."""

import os

from keras_edd.reporting import figures


def test_plots_skip_empty_inputs(tmp_path):
    assert figures.plot_whitebox([], str(tmp_path / "a.png")) is False
    assert figures.plot_blackbox([], str(tmp_path / "d.png"), note="n") is False
    assert figures.plot_sweeps([], str(tmp_path / "b.png")) is False
    assert figures.plot_roc({"entries": []}, str(tmp_path / "c.png"),
                            str(tmp_path / "c.pdf")) is False
    assert os.listdir(tmp_path) == []
