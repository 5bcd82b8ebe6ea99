"""From per-item scores to figures: group bootstrap, paired differences and the answer
distribution (the verdict's rules are in :mod:`evals.verdicts`).

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

CONSTANT_CANDIDATES = 50  # open answers: the most frequent gold answers tried as constants


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


def spread(values: Sequence[float]) -> dict:
    """Max minus min and the standard deviation of per-wording figures."""
    vals = [v for v in values if not math.isnan(v)]
    if not vals:
        return {"range": float("nan"), "std": float("nan")}
    return {"range": max(vals) - min(vals), "std": float(np.std(vals))}
