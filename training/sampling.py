"""Draws made per example: the read layer and which positions of the read span are injected.

Draws use a generator seeded by (seed, example index), so an example's layer and positions do
not depend on batch order, worker count or process rank, and a resumed run sees the same data.
"""

from __future__ import annotations

import random

from oracle.errors import OracleInputError


def default_read_layers(n_layers: int) -> list[int]:
    """Blocks at 25%, 50% and 75% of depth (deduplicated, ascending).

    >>> default_read_layers(36)
    [9, 18, 27]
    """
    if n_layers < 1:
        raise OracleInputError("the model has no decoder blocks")
    return sorted({min(n_layers - 1, max(0, round(n_layers * f))) for f in (0.25, 0.5, 0.75)})


def example_rng(seed: int, index: int) -> random.Random:
    """A generator private to one example of one run."""
    return random.Random(seed * 1_000_003 + index)


def draw_positions(
    span: list[int],
    rng: random.Random,
    mix: dict[str, float],
    max_window: int,
    max_positions: int,
) -> list[int]:
    """Pick the injected positions from ``span`` (ascending token indices).

    ``single``: one token; ``window``: 2..max_window consecutive tokens; ``span``: all of it.
    Every result keeps at most the last ``max_positions`` tokens.
    """
    kinds = [k for k, w in mix.items() if w > 0]
    kind = rng.choices(kinds, weights=[mix[k] for k in kinds])[0]
    if kind == "single" or len(span) == 1:
        chosen = [span[rng.randrange(len(span))]]
    elif kind == "window":
        width = rng.randint(2, max(2, min(max_window, len(span))))
        start = rng.randrange(len(span) - width + 1)
        chosen = span[start : start + width]
    else:
        chosen = list(span)
    return chosen[-max_positions:]
