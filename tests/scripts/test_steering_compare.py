"""The steering comparison's measures, without a model: loops, the on-policy classifier, and
the summary and README written from saved replies (``--rescore``)."""

from __future__ import annotations

import json
import re

import numpy as np

from scripts.experiments.steering_compare import Persona, fit_classifier, is_loop, rescore
from scripts.experiments.steering_report import save

PIRATE = Persona(
    "pirate", "A pirate.", "You are a pirate.",
    re.compile(r"\b(pirate|arr|matey|ye)\b", re.I), re.compile(r"\bpirate\b", re.I),
)  # fmt: skip
ROBOT = Persona(
    "robot", "A robot.", "You are a robot.",
    re.compile(r"\b(robot|beep|circuits)\b", re.I), re.compile(r"\brobot\b", re.I),
)  # fmt: skip


def test_a_reply_stuck_in_a_loop_is_one_and_a_fluent_reply_is_not():
    assert is_loop("I, " * 20)
    assert is_loop("or" * 32)
    assert is_loop("The olden' days when the olden' days when " * 3)
    assert not is_loop(
        "Absolutely, here are some tips for playing football: know the rules, practise "
        "passing every day, and keep fit."
    )
    assert not is_loop("Yes.")  # too short to tell


def test_the_classifier_learns_the_personas_and_reports_its_held_out_accuracy():
    rng = np.random.default_rng(0)
    words = {"none": ["sure", "here", "help"], "pirate": ["arr", "matey", "ship"],
             "robot": ["beep", "circuits", "compute"]}  # fmt: skip
    rows = [
        {"prompt": f"p{i}", "label": label,
         "reply": " ".join(rng.choice(w, 4)) + " about the topic"}
        for i in range(24) for label, w in words.items()
    ]  # fmt: skip
    classify, info = fit_classifier(rows, seed=0)
    assert info["chance"] == 1 / 3 and info["n_fit"] == 72 and info["n_held_out"] == 18
    assert info["held_out_accuracy"] == 1.0
    assert classify(["arr matey", "beep beep", "sure, here"]) == ["pirate", "robot", "none"]


def _rows(replies: list[str], ppl: float) -> dict:
    return {"replies": replies, "ppl_ratio": ppl, "style": [], "oracle_names": [0.0] * len(replies)}


def test_rescored_results_give_the_rates_differences_and_readme(tmp_path):
    """Two personas, two methods: the summary's rates are the shares of the saved replies
    (recounted by --rescore), the paired difference is oracle minus CAA, and the README shows
    the tables, the classifier's ceiling and the replies."""
    test = ["Q1?", "Q2?"]
    caa = {"pirate": ["Arr, matey!", "Plain reply."], "robot": ["Beep.", "I, " * 20]}
    orc = {"pirate": ["Plain.", "Plain again."], "robot": ["Circuits hum.", "Plain."]}
    personas = {}
    for name in ("pirate", "robot"):
        personas[name] = {
            method: {
                "chosen": {"apply": "all", "scale": 2.0}, "seconds": 1.0,
                "steered_greedy": _rows(replies[name], 1.5),
                "random_greedy": _rows(["Plain.", "Plain."], 1.1),
                "steered_sampled": _rows(replies[name], 1.7),
                "random_sampled": _rows(["Plain.", "Plain."], 1.2),
                "curve": [{"scale": 1.0, "style": 0.0, "ppl_ratio": 1.2, "replies": replies[name]}],
            }
            for method, replies in (("caa", caa), ("oracle", orc))
        }  # fmt: skip
    plain = {"greedy": ["Plain.", "Plain."], "sampled": ["Plain.", "Plain."]}
    results = {
        "world": "smol",
        "settings": {"methods": "caa,oracle", "layer": 10, "personas": "pirate,robot",
                     "curve_scales": "1", "n_train": 6, "n_val": 4, "n_test": 2},
        "prompts": {"train": [], "val": [], "test": test},
        "unsteered": {k: {p: _rows(v, 1.0) for p in ("pirate", "robot")} for k, v in plain.items()},
        "unsteered_replies": plain,
        "prompted": {"pirate": _rows(["Ye be asking, matey.", "Plain."], 1.3),
                     "robot": _rows(["Beep boop.", "Plain."], 1.2)},
        "personas": personas,
        "classifier": {"held_out_accuracy": 0.5, "chance": 1 / 3, "n_fit": 60, "n_held_out": 15},
    }  # fmt: skip

    def classify(replies):
        return ["pirate" if "arr" in r.lower() else "none" for r in replies]

    rescore(results, [PIRATE, ROBOT], classify)
    save(results, tmp_path, 12.0)
    saved = json.loads((tmp_path / "results.json").read_text())
    s = saved["summary"]
    assert s["caa"]["steered_greedy_style"]["value"] == 0.5  # Arr; Beep (of 4)
    assert s["oracle"]["steered_greedy_style"]["value"] == 0.25  # Circuits
    assert s["caa"]["steered_greedy_loops"]["value"] == 0.25  # "I, I, ..."
    assert s["caa"]["steered_greedy_classifier"]["value"] == 0.25  # the pirate's "Arr"
    assert s["prompted"]["greedy_style"]["value"] == 0.5
    assert s["oracle_minus_caa_greedy_style"]["value"] == -0.25
    readme = (tmp_path / "README.md").read_text()
    assert "| caa | greedy | 0.50 [" in readme and "| oracle | greedy | 0.25 [" in readme
    assert "names the right one of 3 labels for 0.50 of their 15 replies" in readme
    assert "Oracle steering minus CAA, style-word rate" in readme
    assert "'Arr, matey!'" in readme and (tmp_path / "rate_vs_fluency.svg").exists()
