"""A suite's figures: every method on every subset, the oracle's paired differences, its
answer distribution, per-wording figures, counterfactual pairs, calibration, the verdict, flags
and answers for a person to read.

Subsets of the test items:

- ``all``; ``heldout_question`` (asked in a wording training never used: every gate is here);
- ``constructed``: hidden by construction (``no_reply``, ``plain_reply``, ``text_free``);
- ``headline``: the items the verdict is about, asked in held-out wordings: ``constructed``
  ones where the suite has them, else those the text-only reader gives no evidence for (its
  probability for the true label at most the label's training share), else (open answers)
  those it gets wrong. ``headline_rule`` says which;
- ``reader_hidden`` / ``visible``: the text-only reader's own tags (kept for comparison);
- one subset per split tag (``tag:heldout_system``, ``tag:no_reply``, ...).

Every subset's label mix is reported beside its figures (``label_mix``), and accuracy stands
beside balanced (per-label) accuracy. The constant answer is the most frequent training label.
"""

from __future__ import annotations

import random

from evals import analysis as A
from evals import calibration as C
from evals import counterfactual as CF
from evals import verdicts as V
from evals.runner import METHOD_KINDS

SAMPLE_SIZE = 50
DIFF_SUBSETS = ("heldout_question", "constructed", "headline")
SKIP_TAGS = ("heldout_question", "train_question")
RULE_CONSTRUCTED = "hidden by construction (tags: no_reply, plain_reply, text_free)"
RULE_PROBABILITY = "the text-only reader's probability for the true label <= its training share"
RULE_READER = "the text-only reader gets it wrong and the text names no label word"


def subsets_of(res: dict) -> tuple[dict[str, list[bool]], str]:
    """The subsets (name -> mask over test items) and the rule that defined ``headline``."""
    items = res["items"]
    held = ["heldout_question" in it["tags"] for it in items]
    if not any(held):
        held = [True] * len(items)  # a suite with no wording tags: every item counts
    reader_hidden = list(res["hidden"])
    constructed = list(res.get("constructed_hidden") or [False] * len(items))
    if any(constructed):
        hidden, rule = constructed, RULE_CONSTRUCTED
    elif res.get("reader_p_true") is not None:
        hidden = [p <= q for p, q in zip(res["reader_p_true"], res["reader_prior"], strict=True)]
        rule = RULE_PROBABILITY
    else:
        hidden, rule = reader_hidden, RULE_READER
    out = {
        "all": [True] * len(items),
        "heldout_question": held,
        "constructed": constructed,
        "headline": [h and q for h, q in zip(hidden, held, strict=True)],
        "reader_hidden": reader_hidden,
        "visible": [not h for h in reader_hidden],
    }
    for tag in sorted({t for it in items for t in it["tags"]} - set(SKIP_TAGS)):
        out[f"tag:{tag}"] = [tag in it["tags"] for it in items]
    return out, rule


def _values(method: dict) -> list[float | None]:
    return method["f1"]  # accuracy for label and yes/no items; token-F1 for open answers


def train_constant(res: dict) -> str:
    """The constant answer: the most frequent training label (for open answers, the training
    answer closest to all the others by token-F1 among the 50 most frequent). Without train
    items: the most frequent test label, said so by the caller."""
    from collections import Counter

    from evals.scoring import token_f1

    pool = res.get("train_labels") or [it["label"] for it in res["items"]]
    common = [a for a, _ in Counter(pool).most_common(A.CONSTANT_CANDIDATES)]
    if res["answer_type"] != "text" or len(common) < 2:
        return common[0] if common else ""
    return max(common, key=lambda c: sum(token_f1(c, g) for g in pool))


def summarise_suite(res: dict, n_resamples: int, seed: int) -> dict:
    """Figures of one :func:`evals.runner.evaluate_suite` result (JSON-ready)."""
    from evals.scoring import score_answer

    items, methods = res["items"], dict(res["methods"])
    groups = [it["group"] for it in items]
    gold = [it["label"] for it in items]
    subsets, rule = subsets_of(res)
    constant = train_constant(res)
    const_scores = [score_answer(constant, g, res["answer_type"], res["labels"]).f1 for g in gold]
    closed = res["answer_type"] != "text"

    def est(values, subset):
        return A.estimate(values, groups, subset, n_resamples, seed)

    figures: dict[str, dict[str, dict]] = {}
    balanced: dict[str, dict[str, float]] = {}
    diffs: dict[str, dict[str, dict]] = {}
    oracle = methods.get("oracle")
    for name, subset in subsets.items():
        figures[name] = {"constant": est(const_scores, subset)}
        figures[name] |= {m: est(_values(v), subset) for m, v in methods.items()}
        if not closed:
            figures[name] |= {f"{m} (exact)": est(v["correct"], subset) for m, v in methods.items()}
        else:
            balanced[name] = {"constant": V.balanced_accuracy(const_scores, gold, subset)}
            balanced[name] |= {
                m: V.balanced_accuracy(v["correct"], gold, subset) for m, v in methods.items()
            }
        if oracle is not None and name in DIFF_SUBSETS:
            others = {"constant": const_scores} | {
                m: _values(v) for m, v in methods.items() if m != "oracle"
            }
            diffs[name] = {
                m: A.paired(_values(oracle), v, groups, subset, n_resamples, seed)
                for m, v in others.items()
            }
    mixes = {k: V.label_mix(gold, groups, v) for k, v in subsets.items()} if closed else {}
    dists = {m: A.distribution(_answers(v)) for m, v in methods.items()}
    held = subsets["heldout_question"]
    information: dict = {}
    verdict, why = None, "no oracle answers"
    if oracle is not None:
        if closed:
            named = [p for p, h in zip(oracle["predicted"], held, strict=True) if h]
            information = {
                "balanced": V.balanced_estimate(
                    oracle["correct"], gold, groups, held, n_resamples, seed
                ),
                "chance": 1.0 / max(len(mixes["heldout_question"]), 1),
                "mi_bits": V.mutual_information(
                    named, [g for g, h in zip(gold, held, strict=True) if h]
                ),
            }
        else:
            information = {"vs_constant": diffs["heldout_question"]["constant"]}
        verdict, why = V.decide(
            res["answer_type"],
            information,
            figures["headline"]["oracle"].get("n", 0),
            mixes.get("headline", {}),
            diffs["headline"],
        )
    checks = res.get("checks") or {}
    counterfactual = CF.summarise(checks.get("counterfactual") or [], n_resamples, seed)
    calibration = C.summarise(checks.get("calibration") or {})
    collapse = verdict == V.VERDICT_NONE
    return {
        "subsets": {k: sum(v) for k, v in subsets.items()},
        "subset_groups": {
            k: len({g for g, s in zip(groups, v, strict=True) if s}) for k, v in subsets.items()
        },
        "headline_rule": rule,
        "label_mix": mixes,
        "figures": figures,
        "balanced": balanced,
        "constant": constant,
        "constant_from": "training labels" if res.get("train_labels") else "test labels",
        "oracle_minus": diffs,
        "information": information,
        "best_baseline": _best_baseline(figures["headline"]),
        "distributions": dists,
        "collapse": collapse,
        "n_test_labels": len(set(gold)),
        "verdict": verdict,
        "verdict_why": why,
        "counterfactual": counterfactual,
        "calibration": calibration,
        "wordings": _wordings(res, subsets, est) if oracle is not None else {},
        "flags": _flags(figures["heldout_question"], constant, collapse, why, dists)
        + _lopsided(mixes.get("headline", {})),
        "sample": _sample(res, subsets["headline"], seed),
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
    """The oracle per question wording, on all items and on the headline's hidden ones (for
    the trained wording: none, since the headline holds held-out wordings only), with the
    spread over held-out wordings."""
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
                    values, [m and h for m, h in zip(mask, subsets["headline"], strict=True)]
                ),
            }
        )
    held_rows = [r for r in rows if r["heldout"]] or rows
    return {
        "rows": rows,
        "spread_all": A.spread([r["all"]["value"] for r in held_rows]),
        "spread_hidden": A.spread([r["hidden"]["value"] for r in held_rows]),
    }


def _flags(row: dict, constant: str, collapse: bool, why: str, dists: dict) -> list[str]:
    flags = []
    if collapse:
        d = dists["oracle"]
        flags.append(
            f"NO INFORMATION: {why}; the most frequent answer is {d['top_answer']!r} "
            f"({d['top_share']:.0%})"
        )
    base = row["constant"]
    for m, e in row.items():
        if METHOD_KINDS.get(m) == "control" and e.get("n") and e["lo"] > base["value"]:
            flags.append(
                f"control '{m}' did NOT fail: {e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}] "
                f"is above the constant answer ({constant!r}, {base['value']:.3f})"
            )
    o = row.get("oracle")
    if o and o.get("n") and not o["lo"] > base["value"]:
        flags.append(
            f"the oracle ({o['value']:.3f}, lower bound {o['lo']:.3f}) is not clearly above "
            f"the constant answer ({constant!r}, {base['value']:.3f}) on held-out wordings"
        )
    return flags


def _lopsided(mix: dict[str, int]) -> list[str]:
    why = V.lopsided(mix) if mix else None
    return [f"headline subset: {why}"] if why else []


def _sample(res: dict, headline: list[bool], seed: int) -> list[dict]:
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
                "hidden": headline[i],
            }
        )
    return out
