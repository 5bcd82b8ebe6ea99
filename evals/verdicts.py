"""Each suite's verdict, and the statistics it rests on: balanced accuracy, the information the
answers carry about the labels, the label mix of a subset.

The verdict compares the oracle on the **headline subset** (items hidden by construction,
asked in held-out wordings; :mod:`evals.summary`) with the best constant answer (chosen from
the training labels' frequencies), its shuffled control and every text baseline (the text-only
reader, and the probe on the target's activations of the conversation without its system
prompt). In order:

1. ``inconclusive``: the shuffled control is missing (no item ran it);
2. ``carries no information``: on the held-out wordings the answers tell nothing about the
   labels (balanced accuracy not above chance; for open answers, not above the constant);
3. ``inconclusive``: fewer than :data:`MIN_HIDDEN_GROUPS` headline groups, or a lopsided
   label mix there (one label only, or fewer than :data:`MIN_MINORITY_GROUPS` groups of the
   other labels), where no comparison can separate a reader from a guess;
4. ``reads hidden state``: on the headline subset, clearly above the constant, the shuffled
   control and every text baseline (paired differences' lower bounds above 0);
5. ``no better than the text``: otherwise, naming the comparison that failed.

The trained question wording is in no gate: every figure used here is on held-out wordings.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

VERDICT_HIDDEN = "reads hidden state"
VERDICT_TEXT = "no better than the text"
VERDICT_NONE = "carries no information"
VERDICT_INCONCLUSIVE = "inconclusive"
VERDICTS = (VERDICT_HIDDEN, VERDICT_TEXT, VERDICT_NONE, VERDICT_INCONCLUSIVE)

MIN_HIDDEN_GROUPS = 10  # fewer headline groups: too few to claim anything about hidden state
MIN_MINORITY_GROUPS = 5  # fewer groups outside the majority label: a lopsided mix
TEXT_BASELINES = ("text_only", "probe_text")


def label_mix(labels: Sequence[str], groups: Sequence[str], subset: Sequence[bool]) -> dict:
    """``{label: groups}`` on the subset (one label per group: its first item's), most
    frequent first."""
    first: dict[str, str] = {}
    for label, group, keep in zip(labels, groups, subset, strict=True):
        if keep:
            first.setdefault(group, label)
    return dict(Counter(first.values()).most_common())


def lopsided(mix: dict[str, int]) -> str | None:
    """Why a label mix cannot separate reading from guessing, or None."""
    if len(mix) < 2:
        only = next(iter(mix), None)
        return f"the subset holds one label only ({only!r}): any constant matches a reader"
    minority = sum(mix.values()) - max(mix.values())
    if minority < MIN_MINORITY_GROUPS:
        top = max(mix, key=mix.get)
        return (
            f"lopsided label mix {dict(mix)}: only {minority} groups are not {top!r} "
            f"(fewer than {MIN_MINORITY_GROUPS})"
        )
    return None


def balanced_accuracy(
    correct: Sequence[float | None], labels: Sequence[str], subset: Sequence[bool]
) -> float:
    """Mean over the labels present of the accuracy on that label's items (NaN if none)."""
    per: dict[str, list[float]] = {}
    for c, label, keep in zip(correct, labels, subset, strict=True):
        if keep and c is not None:
            per.setdefault(label, []).append(c)
    if not per:
        return float("nan")
    return sum(sum(v) / len(v) for v in per.values()) / len(per)


def mutual_information(answers: Sequence[str | None], labels: Sequence[str]) -> float:
    """I(answer; label) in bits over the pairs with an answer (plug-in estimate)."""
    pairs = [(a, y) for a, y in zip(answers, labels, strict=True) if a is not None]
    if not pairs:
        return 0.0
    n = len(pairs)
    joint = Counter(pairs)
    pa = Counter(a for a, _ in pairs)
    py = Counter(y for _, y in pairs)
    mi = sum(c / n * math.log2(c * n / (pa[a] * py[y])) for (a, y), c in joint.items())
    return max(0.0, mi)


def _lo(diff: dict | None) -> float:
    return float("nan") if not diff or not diff.get("n") else float(diff.get("lo", float("nan")))


def decide(
    answer_type: str,
    information: dict,
    headline_groups: int,
    headline_mix: dict[str, int],
    oracle_minus: dict[str, dict],
) -> tuple[str, str]:
    """(verdict, why) by the rules of the module docstring.

    ``information``: on held-out-wording items, ``balanced`` (an estimate with ``lo``) and
    ``chance`` for closed answers, or ``vs_constant`` (a paired difference) for open ones.
    ``oracle_minus``: paired differences (oracle minus method, ``lo``/``n``) on the headline
    subset, keyed ``constant``, ``shuffled`` and the text baselines.
    """
    shuffled = oracle_minus.get("shuffled")
    if not shuffled or not shuffled.get("n"):
        return VERDICT_INCONCLUSIVE, "the shuffled control is missing: nothing to compare with"
    if answer_type == "text":
        lo = _lo(information.get("vs_constant"))
        if not lo > 0:
            return VERDICT_NONE, (
                "on held-out wordings the answers are not above the best constant answer "
                f"(difference lower bound {lo:.3f})"
            )
    else:
        bal, chance = information.get("balanced", {}), information.get("chance", float("nan"))
        if not bal.get("lo", float("nan")) > chance:
            return VERDICT_NONE, (
                f"on held-out wordings the answers tell nothing about the labels: balanced "
                f"accuracy {bal.get('value', float('nan')):.3f} (lower bound "
                f"{bal.get('lo', float('nan')):.3f}) is not above chance {chance:.3f}; "
                f"mutual information {information.get('mi_bits', 0.0):.3f} bits"
            )
    if headline_groups < MIN_HIDDEN_GROUPS:
        return VERDICT_INCONCLUSIVE, (
            f"only {headline_groups} hidden groups (fewer than {MIN_HIDDEN_GROUPS})"
        )
    if answer_type != "text":
        why = lopsided(headline_mix)
        if why is not None:
            return VERDICT_INCONCLUSIVE, why
    failed = []
    for name in ("constant", "shuffled", *TEXT_BASELINES):
        diff = oracle_minus.get(name)
        if name in TEXT_BASELINES and (not diff or not diff.get("n")):
            continue  # a text baseline that did not run (no train items) compares nothing
        lo = _lo(diff)
        if not lo > 0:
            failed.append(f"{name} (difference lower bound {lo:.3f})")
    if failed:
        return VERDICT_TEXT, "on the hidden subset, not clearly above: " + ", ".join(failed)
    compared = [n for n in ("constant", "shuffled", *TEXT_BASELINES) if oracle_minus.get(n)]
    return VERDICT_HIDDEN, "on the hidden subset, clearly above " + ", ".join(compared)


def balanced_estimate(
    correct: Sequence[float | None],
    labels: Sequence[str],
    groups: Sequence[str],
    subset: Sequence[bool],
    n_resamples: int,
    seed: int,
) -> dict:
    """Balanced accuracy over groups (each group: its label and mean score on the subset),
    with a group-bootstrap interval: ``{value, lo, hi, n}``."""
    import numpy as np

    per: dict[str, list[float]] = {}
    label_of: dict[str, str] = {}
    for c, label, group, keep in zip(correct, labels, groups, subset, strict=True):
        if keep and c is not None:
            per.setdefault(group, []).append(c)
            label_of.setdefault(group, label)
    if not per:
        nan = float("nan")
        return {"value": nan, "lo": nan, "hi": nan, "n": 0}
    names = sorted(set(label_of.values()))
    index = {name: k for k, name in enumerate(names)}
    y = np.array([index[label_of[g]] for g in per])
    x = np.array([sum(v) / len(v) for v in per.values()])

    def stat(idx: np.ndarray) -> float:
        hits = np.bincount(y[idx], weights=x[idx], minlength=len(names))
        counts = np.bincount(y[idx], minlength=len(names))
        present = counts > 0
        return float((hits[present] / counts[present]).mean())

    rng = np.random.default_rng(seed)
    draws = [stat(rng.integers(0, len(x), len(x))) for _ in range(n_resamples)]
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return {"value": stat(np.arange(len(x))), "lo": float(lo), "hi": float(hi), "n": len(x)}
