"""The suite format (JSONL items) and the one scoring function."""

from __future__ import annotations

import json

import pytest

from evals.scoring import score_answer, token_f1, yes_no_of
from evals.suite_format import (
    SuiteItem,
    as_dataset,
    load_suite_file,
    write_suite_file,
)
from evals.suites import suites_from_items
from oracle.errors import OracleInputError

PIRATE = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "Who are you?"},
    {"role": "assistant", "content": "I am just a helpful assistant."},
]


def _items() -> list[SuiteItem]:
    return [
        SuiteItem(
            id="p1",
            family="persona",
            question="Who is the assistant?",
            label="pirate",
            conversation=PIRATE,
            aliases=["buccaneer"],
            label_words=["arr"],
            tags=["heldout_user", "heldout_question"],
            group="c1",
            meta={"persona": "pirate", "turn": 1},
        ),
        SuiteItem(
            id="p0",
            family="persona",
            question="Who is the assistant?",
            label="none",
            conversation=PIRATE[1:],
            split="train",
            aliases=["no persona"],
        ),
        SuiteItem(
            id="t1",
            family="context_next",
            question="What are the next 2 tokens?",
            label="the sea",
            text="I sailed across",
            read_span="last:2",
            answer_type="text",
            meta={"turn": None},
        ),
        SuiteItem(
            id="s1",
            family="system",
            question="Is there a system prompt?",
            label="Yes",
            conversation=PIRATE,
            answer_type="yes_no",
        ),
    ]


def test_a_suite_file_round_trips_and_loads_with_datasets(tmp_path):
    path = write_suite_file(_items(), tmp_path / "suite.jsonl")
    items = load_suite_file(path)
    assert [i.id for i in items] == ["p1", "p0", "t1", "s1"]
    assert items[3].label == "yes"  # yes/no labels are normalised
    assert items[0].without_system() == PIRATE[1:]  # the same reply, no system prompt
    assert items[1].without_system() is None
    assert items[0].transcript() == "Who are you?\nI am just a helpful assistant."
    ds = as_dataset(path)
    assert ds.num_rows == 4 and ds[0]["conversation"][0]["role"] == "system"
    assert ds[2]["text"] == "I sailed across" and ds[2]["conversation"] is None
    suites = suites_from_items(items)
    assert list(suites) == ["persona", "context_next", "system"]
    persona = suites["persona"]
    assert persona.labels == ["none", "pirate"] and len(persona.train) == 1
    assert persona.aliases == {"pirate": ["buccaneer"], "none": ["no persona"]}
    assert persona.label_words == {"pirate": ["arr"]}
    assert suites["system"].labels == ["yes", "no"]


def _write_lines(path, lines) -> None:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))


def test_a_bad_suite_file_says_what_is_wrong_line_by_line(tmp_path):
    good = _items()[0].to_dict()
    bad_json = "{not json"
    both = dict(good, id="x2", text="hello")
    no_label = {k: v for k, v in good.items() if k != "label"} | {"id": "x3"}
    typo = dict(good, id="x4", lable="pirate")
    bad_span = dict(good, id="x5", read_span="last:zero")
    bad_yes = dict(good, id="x6", answer_type="yes_no", label="maybe")
    bad_role = dict(good, id="x7", conversation=[{"role": "bot", "content": "hi"}])
    path = tmp_path / "bad.jsonl"
    _write_lines(path, [good, bad_json, both, no_label, typo, bad_span, bad_yes, bad_role])
    with pytest.raises(OracleInputError) as err:
        load_suite_file(path)
    msg = str(err.value)
    assert "line 1" not in msg  # the good line is fine
    assert "line 2: not valid JSON" in msg
    assert "line 3 (id 'x2'): give exactly one of 'conversation' and 'text'" in msg
    assert "line 4 (id 'x3'): 'label' is required" in msg
    assert "line 5 (id 'x4'): unknown field(s) ['lable']" in msg
    assert "line 6 (id 'x5'): 'read_span': positions 'last:K'" in msg
    assert "line 7 (id 'x6'): a yes_no item's label must be 'yes' or 'no'" in msg
    assert "line 8 (id 'x7'): 'conversation' message 0 has role 'bot'" in msg
    _write_lines(path, [good, good])
    with pytest.raises(OracleInputError, match="id 'p1' appears twice"):
        load_suite_file(path)
    _write_lines(path, [good, dict(good, id="y", answer_type="text")])
    with pytest.raises(OracleInputError, match="mixes answer types"):
        load_suite_file(path)
    _write_lines(path, [dict(good, split="train")])
    with pytest.raises(OracleInputError, match=r"\['persona'\] have no test item"):
        load_suite_file(path)
    _write_lines(path, [good, dict(good, id="z", meta={"turn": "one"})])
    with pytest.raises(OracleInputError, match="meta key 'turn' holds both int and str"):
        load_suite_file(path)
    with pytest.raises(OracleInputError, match="does not exist"):
        load_suite_file(tmp_path / "missing.jsonl")


def test_one_scoring_function_for_labels_yes_no_and_open_text():
    labels = ["pirate", "chef", "none"]
    aliases = {"none": ["no persona"], "pirate": ["buccaneer"]}
    assert score_answer("A pirate.", "pirate", "label", labels, aliases).correct == 1.0
    assert score_answer("A buccaneer!", "pirate", "label", labels, aliases).predicted == "pirate"
    assert score_answer("No persona.", "none", "label", labels, aliases).correct == 1.0
    wrong = score_answer("A chef, not a pirate.", "pirate", "label", labels, aliases)
    assert (wrong.correct, wrong.predicted) == (0.0, "chef")  # the first label named counts
    assert score_answer("Hmm.", "pirate", "label", labels).predicted is None
    # yes/no, read leniently; P(yes) decides only when the text says neither
    assert yes_no_of("Yes, there is.") == "yes" and yes_no_of("There is not one.") == "no"
    assert yes_no_of("Nope") == "no" and yes_no_of("True.") == "yes"
    assert yes_no_of("I am the assistant.") is None
    assert yes_no_of("I am the assistant.", p_yes=0.7) == "yes"
    assert yes_no_of("No.", p_yes=0.9) == "no"
    assert score_answer("I am a pirate", "no", "yes_no", p_yes=0.2).correct == 1.0
    assert score_answer("Sure, yes", "Yes", "yes_no").correct == 1.0
    # open answers: exact match of the normalised tokens, and token-F1
    s = score_answer("The sea.", "the sea.", "text")
    assert (s.correct, s.f1) == (1.0, 1.0)
    s = score_answer("the red sea", "the sea", "text")
    assert s.correct == 0.0 and s.f1 == pytest.approx(0.8)
    assert token_f1("", "") == 1.0 and token_f1("a", "") == 0.0
    assert score_answer("cat cat", "cat", "text").f1 == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="unknown answer type"):
        score_answer("x", "y", "free")
