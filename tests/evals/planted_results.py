"""Planted suite results (what :func:`evals.runner.evaluate_suite` returns) for the verdict
rules: each builds items, hidden tags and method answers by hand, so a test knows the right
verdict without a model. Used by ``test_planted_verdicts.py``."""

from __future__ import annotations

import random

from evals.scoring import score_answer


def item(group: str, label: str, tags: list[str], visible: str = "") -> dict:
    return {
        "id": f"{group}-w0",
        "group": group,
        "question": "What persona is the assistant playing?",
        "label": label,
        "gold": label,
        "tags": ["heldout_question", *tags],
        "has_system": True,
        "visible": visible,
        "meta": {},
    }


def method(kind: str, answers: list[str], items: list[dict], answer_type: str, labels) -> dict:
    scores = [
        score_answer(a, it["label"], answer_type, labels)
        for a, it in zip(answers, items, strict=True)
    ]
    return {
        "kind": kind,
        "answers": list(answers),
        "correct": [s.correct for s in scores],
        "f1": [s.f1 for s in scores],
        "predicted": [s.predicted for s in scores],
    }


def result(
    items: list[dict],
    answers: dict[str, list[str]],
    reader_hidden: list[bool],
    answer_type: str = "label",
    train_labels: list[str] | None = None,
    name: str = "planted",
) -> dict:
    """A suite result: ``answers`` per method (oracle, shuffled, text_only, probe_text, ...)."""
    labels = sorted({it["label"] for it in items} | set(train_labels or []))
    kinds = {"oracle": "oracle", "shuffled": "control", "no_system": "control"}
    return {
        "name": name,
        "answer_type": answer_type,
        "metric": "accuracy",
        "labels": labels,
        "train_labels": list(train_labels or []),
        "layer": 1,
        "positions": None,
        "n_train": len(train_labels or []),
        "items": items,
        "primary": list(range(len(items))),
        "hidden": list(reader_hidden),
        "constructed_hidden": [
            any(t in ("no_reply", "plain_reply", "text_free") for t in it["tags"]) for it in items
        ],
        "methods": {
            m: method(kinds.get(m, "baseline"), a, items, answer_type, labels)
            for m, a in answers.items()
        },
        "checks": {},
        "text_reader": "planted",
        "hidden_reasons": ["" if h else "reader" for h in reader_hidden],
    }


def shuffled_answers(labels: list[str], seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pool = sorted(set(labels))
    return [rng.choice(pool) for _ in labels]


def lopsided_yes_no() -> dict:
    """The system-prompt suite as the review found it: 120 groups whose text carries nothing
    by construction (92 "yes", 28 "no"), of which the reader-tagged hidden ones are 28 "no"
    and 2 "yes"; the text reader says "yes" (its most common training answer) everywhere; the
    oracle is right on every item."""
    items, reader_hidden = [], []
    for g in range(120):
        label = "yes" if g < 92 else "no"
        items.append(item(f"g{g:03d}", label, ["no_reply"]))
        reader_hidden.append(label == "no" or g < 2)
    gold = [it["label"] for it in items]
    answers = {
        "oracle": [x.capitalize() for x in gold],
        "shuffled": ["Yes" if g % 3 else "No" for g in range(120)],
        "text_only": ["yes"] * 120,
        "probe_text": ["yes"] * 120,
    }
    return result(items, answers, reader_hidden, "yes_no", ["yes"] * 80 + ["no"] * 20)


def majority_label_suite(with_shuffled: bool = True) -> dict:
    """Four labels, 60% "none" (as a persona suite's default prompt may be), every item hidden
    by construction; a perfect oracle; shuffled, text reader and text probe guess."""
    labels = ["none"] * 36 + ["pirate"] * 8 + ["chef"] * 8 + ["robot"] * 8
    items = [item(f"g{g:03d}", label, ["no_reply"]) for g, label in enumerate(labels)]
    answers = {
        "oracle": [f"A {x}." for x in labels],
        "text_only": ["none"] * len(labels),
        "probe_text": ["none"] * len(labels),
    }
    if with_shuffled:
        answers["shuffled"] = shuffled_answers(labels)
    train = ["none"] * 300 + ["pirate"] * 100 + ["chef"] * 100 + ["robot"] * 100
    return result(items, answers, [True] * len(labels), "label", train)


def balanced_suite(with_shuffled: bool = True) -> dict:
    """Four labels in equal shares, every item hidden by construction, a perfect oracle."""
    labels = ["none", "pirate", "chef", "robot"] * 12
    items = [item(f"g{g:03d}", label, ["no_reply"]) for g, label in enumerate(labels)]
    answers = {
        "oracle": [f"A {x}." for x in labels],
        "text_only": ["none"] * len(labels),
        "probe_text": ["none"] * len(labels),
    }
    if with_shuffled:
        answers["shuffled"] = shuffled_answers(labels)
    return result(items, answers, [True] * len(labels), "label", labels * 10)


def text_leak_suite() -> dict:
    """A text-leak suite that still has hidden items: 40 groups whose reply names the persona
    in words the text-only reader missed (so the reader-tagged hidden subset is full of them)
    and 20 groups hidden by construction (no reply). The oracle reads the text only: right
    wherever the text names the label, the training's most common answer elsewhere."""
    personas = ["pirate", "chef", "robot", "poet"]
    items, reader_hidden, oracle = [], [], []
    for g in range(40):
        label = personas[g % 4]
        items.append(item(f"leak{g:03d}", label, ["reply"], f"Speaking as a {label}, hello."))
        reader_hidden.append(True)  # the reader missed the paraphrase
        oracle.append(f"A {label}.")
    for g in range(20):
        label = personas[g % 4]
        items.append(item(f"cut{g:03d}", label, ["no_reply"], "Hello."))
        reader_hidden.append(True)
        oracle.append("A pirate.")  # nothing to read in the text: the prior answer
    gold = [it["label"] for it in items]
    answers = {
        "oracle": oracle,
        "shuffled": shuffled_answers(gold),
        "text_only": ["robot"] * len(items),
        "probe_text": [
            f"A {x}." if it["group"].startswith("leak") else "A pirate."
            for x, it in zip(gold, items, strict=True)
        ],
    }
    return result(items, answers, reader_hidden, "label", personas * 50)


def names_only_with_text() -> dict:
    """An oracle that names the persona only when the visible text does, and says "none"
    otherwise (right for the default prompt only): 50 of 100 groups have a reply naming the
    label, 50 stop after the user turn (no reply)."""
    personas = ["pirate", "chef", "robot", "poet", "none"]
    items, reader_hidden, oracle = [], [], []
    for g in range(100):
        label = personas[g % 5]
        says = g < 50 and label != "none"
        tags = ["reply"] if g < 50 else ["no_reply"]
        items.append(item(f"g{g:03d}", label, tags, f"As a {label}!" if says else "Hi."))
        reader_hidden.append(not says)
        oracle.append(f"A {label}." if says else "none")
    gold = [it["label"] for it in items]
    text = [f"A {x}." if not h else "none" for x, h in zip(gold, reader_hidden, strict=True)]
    answers = {
        "oracle": oracle,
        "shuffled": shuffled_answers(gold),
        "text_only": text,
        "probe_text": text,
    }
    return result(items, answers, reader_hidden, "label", ["none"] * 200 + personas[:4] * 25)


def few_hidden_groups() -> dict:
    """A good oracle on a suite with only 6 groups hidden by construction."""
    labels = ["pirate", "chef", "robot"] * 20
    items = [
        item(
            f"g{g:03d}", label, ["no_reply"] if g < 6 else ["reply"], f"a {label}" if g >= 6 else ""
        )
        for g, label in enumerate(labels)
    ]
    answers = {
        "oracle": [f"A {x}." for x in labels],
        "shuffled": shuffled_answers(labels),
        "text_only": [f"A {x}." if g >= 6 else "A chef." for g, x in enumerate(labels)],
        "probe_text": [f"A {x}." if g >= 6 else "A chef." for g, x in enumerate(labels)],
    }
    return result(items, answers, [g < 6 for g in range(60)], "label", labels * 5)
