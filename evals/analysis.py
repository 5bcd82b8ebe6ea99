"""From per-item scores to figures: group bootstrap, paired differences, the best constant
answer, the answer distribution and its collapse flag, and each suite's verdict.

Items about one target input (a conversation asked in several wordings) form a group; a
method's score on a subset is the mean over groups of its mean over the group's items there,
and the bootstrap resamples groups, so wordings of one conversation are not counted as
independent evidence.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from evals.bootstrap import bootstrap_ci
from evals.scoring import score_answer

COLLAPSE_SHARE = 0.5  # one answer for more than this share of a multi-label suite's items
MIN_HIDDEN_GROUPS = 10  # fewer hidden groups: too few to claim anything about hidden state
CONSTANT_CANDIDATES = 50  # open answers: the most frequent gold answers tried as constants

VERDICT_HIDDEN = "reads hidden state"
VERDICT_TEXT = "no better than the text"
VERDICT_NONE = "carries no information"


def group_means(
    values: Sequence[float | None], groups: Sequence[str], subset: Sequence[bool]
) -> dict[str, float]:
    """{group: mean of its values on the subset}, for groups with at least one value there."""
    sums: dict[str, list[float]] = {}
    for v, g, s in zip(values, groups, subset, strict=True):
        if s and v is not None:
            sums.setdefault(g, []).append(v)
    return {g: sum(v) / len(v) for g, v in sums.items()}


def estimate(
    values: Sequence[float | None],
    groups: Sequence[str],
    subset: Sequence[bool],
    n_resamples: int,
    seed: int,
) -> dict:
    """Mean with a group-bootstrap interval: ``{value, lo, hi, n}`` (n: groups)."""
    means = group_means(values, groups, subset)
    return bootstrap_ci(list(means.values()), n_resamples, seed).to_dict()


def paired(
    a: Sequence[float | None],
    b: Sequence[float | None],
    groups: Sequence[str],
    subset: Sequence[bool],
    n_resamples: int,
    seed: int,
) -> dict:
    """a minus b on the groups where both have a score, with a group-bootstrap interval."""
    ma, mb = group_means(a, groups, subset), group_means(b, groups, subset)
    diffs = [ma[g] - mb[g] for g in ma if g in mb]
    return bootstrap_ci(diffs, n_resamples, seed).to_dict()


def best_constant(
    answer_type: str,
    labels: Sequence[str],
    gold: Sequence[str],
    subset: Sequence[bool],
    train_gold: Sequence[str] = (),
) -> tuple[str, list[float | None]]:
    """The one answer that scores best on the subset (chosen on the subset itself, so it is
    an upper bound for any constant answer), and its per-item scores (None off the subset)."""
    if answer_type == "text":
        pool = train_gold or [g for g, s in zip(gold, subset, strict=True) if s]
        candidates = [a for a, _ in Counter(pool).most_common(CONSTANT_CANDIDATES)]
    else:
        candidates = list(labels)
    best, best_scores, best_mean = "", [None] * len(gold), -1.0
    for answer in candidates:
        scores = [
            score_answer(answer, g, answer_type, labels).f1 if s else None
            for g, s in zip(gold, subset, strict=True)
        ]
        vals = [x for x in scores if x is not None]
        mean = sum(vals) / len(vals) if vals else 0.0
        if mean > best_mean:
            best, best_scores, best_mean = answer, scores, mean
    return best, best_scores


def distribution(answers: Sequence[str | None]) -> dict:
    """Entropy (bits) of the answers, the most frequent one and its share, distinct answers."""
    seen = [a if a is not None else "(none)" for a in answers]
    if not seen:
        return {"entropy_bits": 0.0, "top_answer": None, "top_share": 0.0, "distinct": 0}
    counts = Counter(seen)
    n = len(seen)
    entropy = max(0.0, -sum(c / n * math.log2(c / n) for c in counts.values()))
    top, top_n = counts.most_common(1)[0]
    return {
        "entropy_bits": entropy,
        "top_answer": top,
        "top_share": top_n / n,
        "distinct": len(counts),
        "counts": dict(counts.most_common(10)),
    }


def collapsed(dist: dict, n_test_labels: int) -> bool:
    """One answer for more than half the items of a suite with more than two test labels."""
    return n_test_labels > 2 and dist["top_share"] > COLLAPSE_SHARE


def verdict(
    collapse: bool,
    oracle_vs_constant_all: dict,
    oracle_vs_constant_hidden: dict,
    oracle_vs_shuffled_hidden: dict,
    n_hidden_groups: int,
) -> tuple[str, str]:
    """(verdict, why), from the paired differences' lower bounds.

    - carries no information: the answers collapse to one, or the oracle is not above the
      best constant answer on all items;
    - no better than the text: above it overall, but on the hidden subset not clearly above
      both the best constant answer and its own shuffled control (or too few hidden items);
    - reads hidden state: clearly above both on the hidden subset.
    """
    lo_all = oracle_vs_constant_all.get("lo", float("nan"))
    if collapse:
        return VERDICT_NONE, "one answer for more than half the items (collapse)"
    if not lo_all > 0:
        return VERDICT_NONE, "not above the best constant answer on all items"
    if n_hidden_groups < MIN_HIDDEN_GROUPS:
        return VERDICT_TEXT, (
            f"above the best constant answer, but only {n_hidden_groups} hidden groups "
            f"(fewer than {MIN_HIDDEN_GROUPS}): no evidence beyond the text"
        )
    lo_const = oracle_vs_constant_hidden.get("lo", float("nan"))
    lo_shuf = oracle_vs_shuffled_hidden.get("lo", float("nan"))
    if not lo_const > 0:
        return VERDICT_TEXT, "on the hidden subset, not above the best constant answer"
    if not (lo_shuf > 0 or math.isnan(lo_shuf)):
        return VERDICT_TEXT, "on the hidden subset, not above its shuffled control"
    return VERDICT_HIDDEN, "on the hidden subset, above the best constant answer and shuffled"


def spread(values: Sequence[float]) -> dict:
    """Max minus min and the standard deviation of per-wording figures."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return {"range": float("nan"), "std": float("nan")}
    return {"range": max(vals) - min(vals), "std": float(np.std(vals))}
