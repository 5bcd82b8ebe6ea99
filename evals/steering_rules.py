"""The toy steering experiment's rules: the issue's pass bar, and how a scale is chosen.

Pure functions of measured rates, kept apart from the experiment
:mod:`scripts.experiments.steering_toy`, which measures.
"""

from __future__ import annotations

import math

STYLE_BAR = 0.30  # share of replies holding a persona's style word
BASELINE_TIMES = 5  # ... or this many times a non-zero unsteered share, if lower
PPL_BAR = 2.0  # steered replies' perplexity over unsteered replies', at most
CHOICES = ("max-style", "margin")


def style_rate(pattern, replies: list[str]) -> float:
    return sum(bool(pattern.search(r)) for r in replies) / max(1, len(replies))


def perplexity(nlls: list[float]) -> float:
    finite = [x for x in nlls if math.isfinite(x)]
    return math.exp(sum(finite) / len(finite)) if finite else float("nan")


def style_bar(baseline: float) -> float:
    """The style rate the issue's bar asks for: 30%, or 5x a non-zero baseline if lower."""
    return min(STYLE_BAR, BASELINE_TIMES * baseline) if baseline > 0 else STYLE_BAR


def fluent(ppl_ratio: float) -> bool:
    return math.isfinite(ppl_ratio) and ppl_ratio <= PPL_BAR


def behaviour_passes(rate: float, baseline: float, ppl_ratio: float) -> bool:
    """The issue's bar: >= 30% of replies, or >= 5x a non-zero baseline; fluent (ppl <= 2x)."""
    return rate >= style_bar(baseline) and fluent(ppl_ratio)


def pick_scale(rows: dict, scales: list[float], rule: str, baseline: float) -> float:
    """The scale chosen from validation rows (``{str(scale): {style_rate, ppl_ratio, passes}}``).

    Among the scales that pass on validation, ``max-style`` takes the one with the highest
    style rate (the smallest of equals), which tends to sit at the perplexity bar; ``margin``
    takes the one whose smaller margin to the two bars is largest, ``min(style / bar, 2 /
    ppl ratio)``, the middle of the fluent window. With none passing, both take the most
    on-style fluent scale (ppl ratio <= 2), else the smallest."""
    if rule not in CHOICES:
        raise ValueError(f"unknown rule {rule!r}; expected one of {CHOICES}")

    def most_on_style(candidates: list[float]) -> float:
        return max(candidates, key=lambda s: (rows[str(s)]["style_rate"], -s))

    passing = [s for s in scales if rows[str(s)]["passes"]]
    if passing and rule == "margin":
        bar = style_bar(baseline)

        def margin(s: float) -> tuple[float, float]:
            row = rows[str(s)]
            return (min(row["style_rate"] / bar, PPL_BAR / row["ppl_ratio"]), -s)

        return max(passing, key=margin)
    if passing:
        return most_on_style(passing)
    fluent_scales = [s for s in scales if fluent(rows[str(s)]["ppl_ratio"])]
    return most_on_style(fluent_scales) if fluent_scales else min(scales)


def judge(entry: dict, chosen: float | None) -> None:
    """The verdicts: at the scale chosen on validation prompts, or at any scale without one.
    The random control fails only if it passes at no scale."""
    steered, random_rows = entry["scales"]["steered"], entry["scales"]["random"].values()
    judged = [steered[str(chosen)]] if chosen is not None else list(steered.values())
    for key in ("passes", "passes_as_persona"):
        entry[f"behaviour_{key}"] = any(r[key] for r in judged)
        entry[f"random_{key}"] = any(r[key] for r in random_rows)
    at_one = steered.get(str(chosen)) or steered.get("1.0") or next(iter(steered.values()))
    entry["oracle_fooled_only"] = at_one["oracle_names_persona"] >= 0.5 and not (
        entry["behaviour_passes"] or entry["behaviour_passes_as_persona"]
    )
