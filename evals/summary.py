"""A suite's figures: every method on every subset, the oracle's paired differences, its
answer distribution, per-wording figures, the verdict, flags and answers for a person to read.

Subsets of the test items: ``all``; ``hidden`` and ``visible`` (tagged by the text-only
reader, :mod:`evals.text_reader`); ``headline``: hidden items asked in a held-out wording (all
hidden items when the suite tags no wording ``heldout_question``); ``heldout_question``; and
one subset per split tag (``tag:heldout_system``, ``tag:no_reply``, ...).
"""

from __future__ import annotations

import random

from evals import analysis as A
from evals.runner import METHOD_KINDS

SAMPLE_SIZE = 50
DIFF_SUBSETS = ("all", "hidden", "headline")
SKIP_TAGS = ("heldout_question",)


def subsets_of(res: dict) -> dict[str, list[bool]]:
    items, hidden = res["items"], res["hidden"]
    held = ["heldout_question" in it["tags"] for it in items]
    out = {
        "all": [True] * len(items),
        "hidden": list(hidden),
        "visible": [not h for h in hidden],
        "headline": [h and (q or not any(held)) for h, q in zip(hidden, held, strict=True)],
    }
    if any(held):
        out["heldout_question"] = held
    for tag in sorted({t for it in items for t in it["tags"]} - set(SKIP_TAGS)):
        out[f"tag:{tag}"] = [tag in it["tags"] for it in items]
    return out


def _values(method: dict) -> list[float | None]:
    return method["f1"]  # accuracy for label and yes/no items; token-F1 for open answers


def summarise_suite(res: dict, n_resamples: int, seed: int) -> dict:
    """Figures of one :func:`evals.runner.evaluate_suite` result (JSON-ready)."""
    items, methods = res["items"], dict(res["methods"])
    groups = [it["group"] for it in items]
    gold = [it["label"] for it in items]
    subsets = subsets_of(res)

    def est(values, subset):
        return A.estimate(values, groups, subset, n_resamples, seed)

    figures: dict[str, dict[str, dict]] = {}
    constants: dict[str, str] = {}
    diffs: dict[str, dict[str, dict]] = {}
    oracle = methods.get("oracle")
    for name, subset in subsets.items():
        answer, const_scores = A.best_constant(
            res["answer_type"], res["labels"], gold, subset, res.get("train_labels", [])
        )
        constants[name] = answer
        row = {"constant": est(const_scores, subset)}
        row |= {m: est(_values(v), subset) for m, v in methods.items()}
        if res["answer_type"] == "text":
            row |= {f"{m} (exact)": est(v["correct"], subset) for m, v in methods.items()}
        figures[name] = row
        if oracle is not None and name in DIFF_SUBSETS:
            others = {"constant": const_scores} | {
                m: _values(v) for m, v in methods.items() if m != "oracle"
            }
            diffs[name] = {
                m: A.paired(_values(oracle), v, groups, subset, n_resamples, seed)
                for m, v in others.items()
            }
    n_labels = len(set(gold))
    dists = {m: A.distribution(_answers(v)) for m, v in methods.items()}
    collapse = oracle is not None and A.collapsed(dists["oracle"], n_labels)
    headline_groups = figures["headline"].get("oracle", {}).get("n", 0)
    verdict, why = (None, "no oracle answers")
    if oracle is not None:
        verdict, why = A.verdict(
            collapse,
            diffs["all"]["constant"],
            diffs["headline"]["constant"],
            diffs["headline"].get("shuffled", {}),
            headline_groups,
        )
    return {
        "subsets": {k: sum(v) for k, v in subsets.items()},
        "subset_groups": {
            k: len({g for g, s in zip(groups, v, strict=True) if s}) for k, v in subsets.items()
        },
        "figures": figures,
        "constants": constants,
        "oracle_minus": diffs,
        "best_baseline": _best_baseline(figures["headline"]),
        "distributions": dists,
        "collapse": collapse,
        "n_test_labels": n_labels,
        "verdict": verdict,
        "verdict_why": why,
        "wordings": _wordings(res, subsets, est) if oracle is not None else {},
        "flags": _flags(res["name"], figures["all"], constants["all"], collapse, dists)
        + _one_label(gold, subsets["headline"]),
        "sample": _sample(res, seed),
    }


def _answers(method: dict) -> list[str]:
    """What the distribution counts: the label named, else the normalised answer text."""
    out = []
    for pred, ans in zip(method["predicted"], method["answers"], strict=True):
        if ans is None:
            continue
        out.append(pred if pred is not None else " ".join(ans.lower().split()) or "(empty)")
    return out


def _best_baseline(row: dict[str, dict]) -> dict | None:
    """The baseline with the highest figure on a subset (the constant answer included)."""
    best = None
    for m, e in row.items():
        if METHOD_KINDS.get(m) != "baseline" or not e.get("n"):
            continue
        if best is None or e["value"] > best[1]["value"]:
            best = (m, e)
    return None if best is None else {"method": best[0], **best[1]}


def _wordings(res: dict, subsets: dict[str, list[bool]], est) -> dict:
    """The oracle per question wording, on all items and on the hidden ones, with the spread
    over held-out wordings."""
    items, values = res["items"], _values(res["methods"]["oracle"])
    rows = []
    for q in dict.fromkeys(it["question"] for it in items):
        mask = [it["question"] == q for it in items]
        held = any("heldout_question" in it["tags"] for it, m in zip(items, mask, strict=True) if m)
        rows.append(
            {
                "question": q,
                "heldout": held,
                "all": est(values, mask),
                "hidden": est(
                    values, [m and h for m, h in zip(mask, subsets["hidden"], strict=True)]
                ),
            }
        )
    held_rows = [r for r in rows if r["heldout"]] or rows
    return {
        "rows": rows,
        "spread_all": A.spread([r["all"]["value"] for r in held_rows]),
        "spread_hidden": A.spread([r["hidden"]["value"] for r in held_rows]),
    }


def _flags(name: str, row: dict, constant: str, collapse: bool, dists: dict) -> list[str]:
    flags = []
    if collapse:
        d = dists["oracle"]
        flags.append(
            f"COLLAPSE: the oracle gives one answer ({d['top_answer']!r}) for "
            f"{d['top_share']:.0%} of the items: it carries no information"
        )
    base = row["constant"]
    for m, e in row.items():
        if METHOD_KINDS.get(m) == "control" and e.get("n") and e["lo"] > base["value"]:
            flags.append(
                f"control '{m}' did NOT fail: {e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}] "
                f"is above the best constant answer ({constant!r}, {base['value']:.3f})"
            )
    o = row.get("oracle")
    if o and o.get("n") and not o["lo"] > base["value"]:
        flags.append(
            f"the oracle ({o['value']:.3f}, lower bound {o['lo']:.3f}) is not clearly above "
            f"the best constant answer ({constant!r}, {base['value']:.3f})"
        )
    return flags


def _one_label(gold: list[str], headline: list[bool]) -> list[str]:
    labels = {g for g, h in zip(gold, headline, strict=True) if h}
    if len(labels) != 1:
        return []
    return [
        f"the hidden subset holds one label only ({labels.pop()!r}): a constant answer matches "
        "any reader there, so this suite cannot show hidden reading"
    ]


def _sample(res: dict, seed: int) -> list[dict]:
    """Up to 50 random test items with the oracle's answer, for a person to read: one random
    item from each of up to 50 random groups (then other items, if there are fewer groups)."""
    oracle = res["methods"].get("oracle")
    if oracle is None:
        return []
    rng = random.Random(seed)
    by_group: dict[str, list[int]] = {}
    for i, it in enumerate(res["items"]):
        by_group.setdefault(it["group"], []).append(i)
    groups = rng.sample(sorted(by_group), min(SAMPLE_SIZE, len(by_group)))
    idx = [rng.choice(by_group[g]) for g in groups]
    rest = [i for i in range(len(res["items"])) if i not in set(idx)]
    idx += rng.sample(rest, min(SAMPLE_SIZE - len(idx), len(rest)))
    out = []
    for i in sorted(idx):
        it = res["items"][i]
        out.append(
            {
                "id": it["id"],
                "question": it["question"],
                "visible": it["visible"],
                "gold": it["gold"],
                "answer": oracle["answers"][i],
                "score": oracle["f1"][i],
                "hidden": res["hidden"][i],
            }
        )
    return out
