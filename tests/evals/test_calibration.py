"""Calibration of the oracle's confidence (evals/calibration.py): reliability bins and ECE,
accuracy against coverage, and the two confidences' definitions."""

from __future__ import annotations

import pytest

from evals.calibration import (
    agreement,
    coverage_curve,
    reliability,
    summarise,
    yes_no_probability,
)


def test_a_calibrated_confidence_has_zero_ece_and_an_overconfident_one_its_gap():
    # 10 answers at confidence 0.8, 8 of them right: calibrated
    conf, correct = [0.8] * 10, [1] * 8 + [0] * 2
    assert reliability(conf, correct)["ece"] == pytest.approx(0.0)
    # the same answers, 4 of them right: the gap is 0.4
    rel = reliability(conf, [1] * 4 + [0] * 6)
    assert rel["ece"] == pytest.approx(0.4)
    (full,) = [b for b in rel["bins"] if b["n"]]
    assert (full["lo"], full["n"], full["accuracy"]) == (0.8, 10, 0.4)
    # two bins, weighted by their counts: |1.0 - 0.95| * 0.5 + |0.0 - 0.15| * 0.5
    rel = reliability([0.95] * 5 + [0.15] * 5, [1] * 5 + [0] * 5)
    assert rel["ece"] == pytest.approx(0.1)
    assert rel["bins"][9]["n"] == 5 and rel["bins"][1]["n"] == 5
    # unanswered items (None) are left out; confidence 1.0 falls in the last bin
    rel = reliability([1.0, None, 0.0], [1, 0, None])
    assert rel["n"] == 1 and rel["bins"][-1]["n"] == 1


def test_accuracy_against_coverage_answers_the_most_confident_first():
    conf = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1, 0.05]
    correct = [1, 1, 1, 1, 0, 1, 0, 0, 0, 0]
    curve = {round(c["nominal"], 1): c for c in coverage_curve(conf, correct)}
    assert curve[0.4]["accuracy"] == 1.0 and curve[0.4]["threshold"] == 0.6
    assert curve[0.5]["accuracy"] == pytest.approx(0.8)
    assert curve[1.0]["accuracy"] == pytest.approx(0.5) and curve[1.0]["n"] == 10
    # ties at the threshold are all answered: coverage may exceed the nominal share
    tied = coverage_curve([1.0] * 6 + [0.2] * 4, [1] * 6 + [0] * 4, coverages=(0.1,))
    assert tied[0]["coverage"] == pytest.approx(0.6) and tied[0]["accuracy"] == 1.0
    assert coverage_curve([], []) == []


def test_the_two_confidences():
    assert agreement("pirate", ["pirate", "pirate", "chef", None]) == 0.5
    assert agreement("pirate", []) is None
    # a yes/no answer's probability is that of the side it took
    assert yes_no_probability("yes", 0.9) == pytest.approx(0.9)
    assert yes_no_probability("no", 0.9) == pytest.approx(0.1)
    assert yes_no_probability(None, 0.9) is None and yes_no_probability("yes", None) is None
    out = summarise({"agreement": [1.0, 0.0], "probability": [0.9, 0.2], "correct": [1, 0]})
    assert set(out) == {"agreement", "probability"}
    assert out["agreement"]["reliability"]["ece"] == pytest.approx(0.0)
    assert summarise({}) == {}
