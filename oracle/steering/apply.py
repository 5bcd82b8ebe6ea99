"""Where a steering vector is added: the apply modes, one registered entry each.

A mode turns each row's reply span ``[start, end)`` (``start``: the position that predicts the
reply's first token) into the 0/1 mask of :func:`oracle.steering.hooks.add_vector`:

- ``all``: every position (no mask), prompt and reply alike;
- ``reply``: the reply only, from ``start`` on; the prompt is read unsteered;
- ``first``: ``start`` alone, where the reply starts; the reply reads it through attention, and
  decode steps get nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oracle.errors import OracleInputError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ApplyMode:
    name: str
    help: str
    needs_reply: bool  # a reply span must be known: optimisation reads the reply
    decode: bool  # whether decode steps (one new token per row) get the vector
    span: Callable[[int, int], tuple[int, int]] | None  # (start, end) -> masked [a, b)

    def mask(self, width: int, spans: Sequence[tuple[int, int]]) -> torch.Tensor | None:
        """(B, width) 0/1 mask for the rows' ``(start, end)`` spans; None: every position."""
        if self.span is None:
            return None
        import torch  # here: the registry is read where torch is not loaded (the CLI's options)

        mask_BT = torch.zeros(len(spans), width)
        for b, (start, end) in enumerate(spans):
            lo, hi = self.span(start, end)
            mask_BT[b, lo:hi] = 1.0
        return mask_BT


APPLY_MODES: dict[str, ApplyMode] = {}


def register(mode: ApplyMode) -> ApplyMode:
    APPLY_MODES[mode.name] = mode
    return mode


register(ApplyMode("all", "every position", needs_reply=False, decode=True, span=None))
register(
    ApplyMode(
        "reply",
        "the reply only, from the position that predicts its first token on",
        needs_reply=True,
        decode=True,
        span=lambda start, end: (start, end),
    )
)
register(
    ApplyMode(
        "first",
        "the reply's start alone (the prompt's last position); the reply reads it through "
        "attention",
        needs_reply=True,
        decode=False,
        span=lambda start, end: (start, start + 1),
    )
)
APPLIES = tuple(APPLY_MODES)


def apply_mode(name: str, where: str = "") -> ApplyMode:
    """The registered mode ``name``; :class:`OracleInputError` naming the choices otherwise."""
    if name not in APPLY_MODES:
        prefix = f"{where}: " if where else ""
        raise OracleInputError(f"{prefix}apply must be one of {APPLIES}, got {name!r}")
    return APPLY_MODES[name]


def check_apply(apply: str, where: str = "") -> None:
    """Raise :class:`OracleInputError` unless ``apply`` is a registered mode."""
    apply_mode(apply, where)


def steer_mask(apply: str, width: int, spans: Sequence[tuple[int, int]]) -> torch.Tensor | None:
    """The (B, width) mask of mode ``apply`` for the rows' reply spans (None for 'all')."""
    return apply_mode(apply).mask(width, spans)
