"""How far an answer's confidence can be trusted: reliability, ECE, and accuracy against coverage.

Two confidences per answer (computed by the runner):

- ``agreement``: the share of k answers sampled at temperature 1 that name the same label (or,
  for open answers, give the same normalised text) as the greedy answer;
- ``probability``: the greedy answer's own probability under the oracle (the product of its
  tokens' probabilities and the end of sequence); for yes/no questions, whose answer is
  decided by P(yes) against P(no) at the first token rather than generated, the probability
  of the side chosen, P(yes) / (P(yes) + P(no)) or its complement.

A published study of activation oracles found the sampling-based confidence well calibrated
and the log-probability not; both are reported so that a user can see which to trust here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

N_BINS = 10
COVERAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def _pairs(confidence: Sequence[float | None], correct: Sequence[float | None]):
    return [
        (float(c), float(y))
        for c, y in zip(confidence, correct, strict=True)
        if c is not None and y is not None
    ]


def reliability(
    confidence: Sequence[float | None], correct: Sequence[float | None], n_bins: int = N_BINS
) -> dict:
    """Equal-width confidence bins: per bin its count, mean confidence and accuracy; and the
    expected calibration error (ECE: the count-weighted mean gap between the two)."""
    pairs = _pairs(confidence, correct)
    bins = []
    ece = 0.0
    for b in range(n_bins):
        lo, hi = b / n_bins, (b + 1) / n_bins
        inside = [(c, y) for c, y in pairs if lo <= c < hi or (b == n_bins - 1 and c == 1.0)]
        if not inside:
            bins.append({"lo": lo, "hi": hi, "n": 0, "confidence": None, "accuracy": None})
            continue
        conf = sum(c for c, _ in inside) / len(inside)
        acc = sum(y for _, y in inside) / len(inside)
        ece += len(inside) / len(pairs) * abs(acc - conf)
        bins.append({"lo": lo, "hi": hi, "n": len(inside), "confidence": conf, "accuracy": acc})
    return {"n": len(pairs), "ece": ece if pairs else float("nan"), "bins": bins}


def coverage_curve(
    confidence: Sequence[float | None],
    correct: Sequence[float | None],
    coverages: Sequence[float] = COVERAGES,
) -> list[dict]:
    """Accuracy when the oracle answers only its most confident items and says "can't tell"
    for the rest: per coverage, the threshold it implies and the accuracy of what is answered.
    Ties at the threshold are all answered (coverage can exceed the nominal share)."""
    pairs = sorted(_pairs(confidence, correct), key=lambda p: -p[0])
    out = []
    for share in coverages:
        if not pairs:
            break
        k = max(1, round(share * len(pairs)))
        threshold = pairs[k - 1][0]
        kept = [y for c, y in pairs if c >= threshold]
        out.append(
            {
                "coverage": len(kept) / len(pairs),
                "nominal": share,
                "threshold": threshold,
                "accuracy": sum(kept) / len(kept),
                "n": len(kept),
            }
        )
    return out


def agreement(greedy: str | None, samples: Sequence[str | None]) -> float | None:
    """Share of ``samples`` equal to ``greedy`` (both as scored: a label or normalised text)."""
    if not samples:
        return None
    return sum(s is not None and s == greedy for s in samples) / len(samples)


def yes_no_probability(predicted: str | None, p_yes: float | None) -> float | None:
    """The probability of the side a yes/no answer took (P(yes) normalised over yes and no)."""
    if p_yes is None or predicted not in ("yes", "no"):
        return None
    return p_yes if predicted == "yes" else 1.0 - p_yes


def confidences(run: Any, k: int) -> dict:
    """Each primary item's two confidences in the oracle's greedy answer (``run``: the
    runner's suite run): ``agreement`` of ``k`` answers sampled at temperature 1 (seeded),
    and ``probability``, the greedy answer's own. Returns ``{index: [...], agreement: [...],
    probability: [...], correct: [...]}`` over the primary items."""
    oracle = run.methods.get("oracle")
    if oracle is None or k < 1:
        return {}
    idx = list(run.primary)
    sets = [run.acts[i] for i in idx]
    samples: list[list[str | None]] = [[] for _ in idx]
    for j in range(k):
        texts, p_yes = run.ask_sets(sets, idx, temperature=1.0, seed=run.cfg.seed * 1000 + j)
        for n, (i, text, p) in enumerate(zip(idx, texts, p_yes, strict=True)):
            samples[n].append(run.score(text, i, p).predicted)
    if run.yes_no:
        probability = [yes_no_probability(oracle["predicted"][i], oracle["p_yes"][i]) for i in idx]
    else:
        requests = run.requests(sets, idx)
        logps = run.engine.answer_logprobs(requests, [oracle["answers"][i] or "" for i in idx])
        probability = [math.exp(lp) for lp in logps]
    return {
        "index": idx,
        "agreement": [
            agreement(oracle["predicted"][i], s) for i, s in zip(idx, samples, strict=True)
        ],
        "probability": probability,
        "correct": [oracle["correct"][i] for i in idx],
    }


def summarise(conf: dict) -> dict:
    """Reliability (with ECE) and the coverage curve of each confidence."""
    if not conf:
        return {}
    return {
        kind: {
            "reliability": reliability(conf[kind], conf["correct"]),
            "coverage": coverage_curve(conf[kind], conf["correct"]),
        }
        for kind in ("agreement", "probability")
    }
