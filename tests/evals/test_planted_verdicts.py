"""Planted results for each way the old verdict rules went wrong (each of these failed on the
rules before the headline subset was defined by construction; the issue note shows it), and
the statistics the new rules rest on."""

from __future__ import annotations

import pytest

from evals.summary import summarise_suite
from evals.verdicts import (
    VERDICT_HIDDEN,
    VERDICT_INCONCLUSIVE,
    VERDICT_NONE,
    VERDICT_TEXT,
    balanced_accuracy,
    balanced_estimate,
    decide,
    label_mix,
    lopsided,
    mutual_information,
)
from tests.evals import planted_results as P


def summary(res: dict) -> dict:
    return summarise_suite(res, n_resamples=300, seed=0)


def test_a_perfect_oracle_on_a_lopsided_yes_no_suite_reads_hidden_state():
    s = summary(P.lopsided_yes_no())
    assert s["headline_rule"].startswith("hidden by construction")
    assert s["label_mix"]["headline"] == {"yes": 92, "no": 28}
    # the reader-tagged subset is the lopsided 28/2 one; the headline is not
    assert s["label_mix"]["reader_hidden"] == {"no": 28, "yes": 2}
    assert s["figures"]["headline"]["oracle"]["value"] == 1.0
    assert s["constant"] == "yes"
    assert s["verdict"] == VERDICT_HIDDEN, s["verdict_why"]


def test_a_missing_shuffled_control_is_inconclusive():
    s = summary(P.balanced_suite(with_shuffled=False))
    assert s["verdict"] == VERDICT_INCONCLUSIVE
    assert "shuffled control is missing" in s["verdict_why"]


def test_a_perfect_oracle_on_a_majority_label_suite_is_not_called_collapsed():
    s = summary(P.majority_label_suite())
    assert s["distributions"]["oracle"]["top_share"] == 0.6  # a top-share rule says collapse
    assert not s["collapse"]
    assert s["information"]["balanced"]["value"] == 1.0
    assert s["information"]["mi_bits"] > 1.5
    assert s["verdict"] == VERDICT_HIDDEN, s["verdict_why"]


def test_a_text_leak_suite_with_hidden_items_is_no_better_than_the_text():
    s = summary(P.text_leak_suite())
    # the reader-tagged hidden subset is full of leaks the oracle reads: 0.73 there
    assert s["figures"]["reader_hidden"]["oracle"]["value"] > 0.7
    # items hidden by construction: the oracle says its prior answer
    assert s["subset_groups"]["headline"] == 20
    assert s["verdict"] == VERDICT_TEXT, s["verdict_why"]
    assert "constant" in s["verdict_why"]


def test_an_oracle_that_names_the_label_only_when_the_text_does_is_no_better_than_the_text():
    s = summary(P.names_only_with_text())
    assert s["distributions"]["oracle"]["top_share"] > 0.5  # "No persona." for most items
    assert not s["collapse"]  # it does carry information: it names what the text names
    assert s["verdict"] == VERDICT_TEXT, s["verdict_why"]


def test_too_few_hidden_groups_is_inconclusive_not_no_better_than_the_text():
    s = summary(P.few_hidden_groups())
    assert s["subset_groups"]["headline"] == 6
    assert s["verdict"] == VERDICT_INCONCLUSIVE
    assert "only 6 hidden groups" in s["verdict_why"]


def test_the_trained_wording_is_in_no_gate():
    res = P.majority_label_suite()
    # the same items asked in the trained wording, answered wrongly: no figure in a gate moves
    extra = [
        dict(it, id=it["id"] + "-t", tags=["train_question", "no_reply"]) for it in res["items"]
    ]
    base = summary(res)
    res["items"] = res["items"] + extra
    res["primary"] = list(range(len(res["items"])))
    for name, m in res["methods"].items():
        wrong = "A chef." if name == "oracle" else m["answers"][0]
        more = P.method(m["kind"], [wrong] * len(extra), extra, "label", res["labels"])
        for key in ("answers", "correct", "f1", "predicted"):
            m[key] = m[key] + more[key]
    for key in ("hidden", "constructed_hidden", "hidden_reasons"):
        res[key] = res[key] + res[key][: len(extra)]
    s = summary(res)
    assert s["figures"]["all"]["oracle"]["value"] < 0.7  # the trained wording drags "all" down
    assert s["information"] == base["information"]
    assert s["figures"]["headline"]["oracle"] == base["figures"]["headline"]["oracle"]
    assert s["verdict"] == base["verdict"] == VERDICT_HIDDEN


def test_no_information_when_answers_do_not_depend_on_the_labels():
    res = P.majority_label_suite()
    res["methods"]["oracle"] = P.method(
        "oracle", ["No persona."] * len(res["items"]), res["items"], "label", res["labels"]
    )
    s = summary(res)
    assert s["verdict"] == VERDICT_NONE and s["collapse"]
    assert any(f.startswith("NO INFORMATION") for f in s["flags"])


def test_statistics():
    assert balanced_accuracy([1, 1, 1, 0], ["a", "a", "a", "b"], [True] * 4) == 0.5
    assert mutual_information(["x", "x", "y", "y"], ["a", "a", "b", "b"]) == pytest.approx(1.0)
    assert mutual_information(["x", "x", "x", "x"], ["a", "a", "b", "b"]) == 0.0
    mix = label_mix(["a", "a", "b"], ["g1", "g1", "g2"], [True] * 3)
    assert mix == {"a": 1, "b": 1}
    assert lopsided({"no": 28, "yes": 2}) and not lopsided({"yes": 92, "no": 28})
    assert lopsided({"yes": 10})
    est = balanced_estimate([1, 0, 1, 1], ["a", "b", "a", "b"], list("pqrs"), [True] * 4, 200, 0)
    assert est["value"] == 0.75 and est["lo"] <= 0.75 <= est["hi"] and est["n"] == 4


def test_decide_orders_its_rules():
    up, zero = {"lo": 0.1, "value": 0.3, "n": 50}, {"lo": -0.1, "value": 0.0, "n": 50}
    info = {"balanced": {"value": 0.8, "lo": 0.7}, "chance": 0.25, "mi_bits": 1.0}
    mix = {"a": 20, "b": 20}
    every = {"constant": up, "shuffled": up, "text_only": up, "probe_text": up}
    assert decide("label", info, 40, mix, every)[0] == VERDICT_HIDDEN
    assert decide("label", info, 40, mix, {**every, "probe_text": zero})[0] == VERDICT_TEXT
    assert decide("label", info, 40, mix, {**every, "shuffled": {}})[0] == VERDICT_INCONCLUSIVE
    low = {"balanced": {"value": 0.3, "lo": 0.2}, "chance": 0.25, "mi_bits": 0.0}
    assert decide("label", low, 40, mix, every)[0] == VERDICT_NONE
    assert decide("label", info, 9, mix, every)[0] == VERDICT_INCONCLUSIVE
    assert decide("label", info, 40, {"a": 38, "b": 2}, every)[0] == VERDICT_INCONCLUSIVE
    text_info = {"vs_constant": up}
    assert decide("text", text_info, 40, {}, every)[0] == VERDICT_HIDDEN
    assert decide("text", {"vs_constant": zero}, 40, {}, every)[0] == VERDICT_NONE
