"""Paired counterfactuals: the same visible text under another hidden prompt.

A suite item may carry ``counterfactuals``: the same conversation (same user turn, same reply)
with the system prompt removed (``kind: "no_system"``) or swapped for another label's prompt
(``kind: "swap"``), each with the label it should then read as. The oracle is asked the same
question about each. Its answer **follows the prompt** when it names the counterfactual's label;
it **changed** when it names another label than it did for the original.

Nothing here needs a text reader: the visible text is identical, so an oracle that answered from
the text would give the same answer every time. The follow rate, with a group-bootstrap
interval, is the cleanest evidence that the oracle reads the hidden state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from evals.bootstrap import bootstrap_ci

KINDS = ("no_system", "swap")


def summarise(records: Sequence[dict], n_resamples: int, seed: int) -> dict:
    """Per kind, over all pairs and over those hidden by construction: how often the answer
    follows the prompt and how often it changed.

    ``records``: one per counterfactual asked, ``{group, kind, label, original, predicted,
    original_correct}`` (``predicted``: the label the answer names, or None).
    """
    out = {}
    for kind, only_constructed in [(k, c) for k in KINDS for c in (False, True)]:
        rows = [
            r
            for r in records
            if r["kind"] == kind and (r.get("constructed") or not only_constructed)
        ]
        if not rows:
            continue
        follows: dict[str, list[float]] = {}
        changed: dict[str, list[float]] = {}
        both: dict[str, list[float]] = {}
        for r in rows:
            follows.setdefault(r["group"], []).append(float(r["predicted"] == r["label"]))
            changed.setdefault(r["group"], []).append(float(r["predicted"] != r["original"]))
            # the strict pairing: right on the original and following on the counterfactual
            both.setdefault(r["group"], []).append(
                float(bool(r["original_correct"]) and r["predicted"] == r["label"])
            )

        def est(d: dict[str, list[float]]) -> dict:
            values = [sum(v) / len(v) for v in d.values()]
            return bootstrap_ci(values, n_resamples, seed).to_dict()

        out[f"{kind} (hidden by construction)" if only_constructed else kind] = {
            "n": len(rows),
            "groups": len(follows),
            "follows": est(follows),
            "changed": est(changed),
            "right_then_follows": est(both),
            "labels": sorted({r["label"] for r in rows}),
        }
    return out


def ask(run: Any) -> list[dict]:
    """Ask the oracle about every counterfactual of the run's primary items (one per group);
    ``run`` is the runner's suite run (:class:`evals.runner._Run`). The ``no_system``
    control's answers are reused where it read the same conversation."""
    from evals.suite_format import SuiteItem

    oracle = run.methods.get("oracle")
    control = run.methods.get("no_system")
    if oracle is None or run.suite.answer_type == "text":
        return []
    todo: list[tuple[int, dict, SuiteItem]] = []
    records: list[dict] = []
    for i in run.primary:
        item = run.items[i]
        if (run.span or item.read_span or "").startswith("indices:"):
            continue  # absolute token indices move when the system prompt does
        for cf, conv in item.counterfactual_conversations():
            reuse = (
                control is not None
                and cf["kind"] == "no_system"
                and control["answers"][i] is not None
                and conv == item.without_system()
            )
            if reuse:
                records.append(_record(run, i, cf, control["answers"][i]))
                continue
            todo.append((i, cf, SuiteItem(**{**item.to_dict(), "conversation": conv})))
    if todo:
        plain = [t[2] for t in todo]
        run.caps.run(plain, run.span)
        sets = [run.caps.get(p, run.span).acts for p in plain]
        texts, p_yes = run.ask_sets(sets, [t[0] for t in todo])
        for (i, cf, _), text, p in zip(todo, texts, p_yes, strict=True):
            records.append(_record(run, i, cf, text, p))
    return records


def _record(run: Any, i: int, cf: dict, text: str, p_yes: float | None = None) -> dict:
    """One counterfactual's answer, scored with its own label (and aliases) among the
    suite's labels, so that a label the suite's test items lack ("none") can be named."""
    from evals.scoring import score_answer

    suite, oracle = run.suite, run.methods["oracle"]
    labels = list(dict.fromkeys([*suite.labels, cf["label"]]))
    aliases = dict(suite.aliases)
    aliases[cf["label"]] = [*aliases.get(cf["label"], []), *cf.get("aliases", [])]
    predicted = score_answer(text, cf["label"], suite.answer_type, labels, aliases, p_yes).predicted
    return {
        "group": run.items[i].key,
        "id": run.items[i].id,
        "kind": cf["kind"],
        "label": cf["label"],
        "answer": text,
        "original": oracle["predicted"][i],
        "original_correct": oracle["correct"][i] == 1.0,
        "predicted": predicted,
        "constructed": run.items[i].constructed_hidden,
    }
