"""Which token positions of a target input to read.

A position spec is a string, so that the CLI, configs and the HTTP API share one syntax:

- ``all``: every token;
- ``last:K``: the last K tokens;
- ``role:system`` / ``role:user`` / ``role:assistant``: the tokens of that role's messages;
- ``non_system``: every token after the system prompt (the default for hidden-prompt questions:
  the oracle then cannot read the prompt's own text);
- ``indices:I,J,...``: explicit 0-based indices (negative ones count from the end).
"""

from __future__ import annotations

from bisect import bisect_right

from oracle.errors import OracleInputError
from oracle.inputs import ROLES, TokenizedInput

POSITION_MODES = ("all", "last:K", "role:ROLE", "non_system", "indices:I,J,...")


def parse_positions(spec: str) -> tuple[str, object]:
    """Split and validate a spec; returns (mode, argument)."""
    if not isinstance(spec, str) or not spec.strip():
        raise OracleInputError(f"positions must be one of {POSITION_MODES}, got {spec!r}")
    spec = spec.strip()
    mode, _, arg = spec.partition(":")
    if mode in ("all", "non_system") and not arg:
        return mode, None
    if mode == "last":
        if not arg.isdigit() or int(arg) < 1:
            raise OracleInputError(f"positions 'last:K' needs a positive integer K, got {spec!r}")
        return mode, int(arg)
    if mode == "role":
        if arg not in ROLES:
            raise OracleInputError(f"positions 'role:ROLE' needs ROLE in {ROLES}, got {spec!r}")
        return mode, arg
    if mode == "indices":
        try:
            indices = [int(x) for x in arg.split(",") if x.strip()]
        except ValueError:
            raise OracleInputError(f"positions 'indices:' needs integers, got {spec!r}") from None
        if not indices:
            raise OracleInputError("positions 'indices:' needs at least one index")
        return mode, indices
    raise OracleInputError(f"positions must be one of {POSITION_MODES}, got {spec!r}")


def read_spec(spec: str | None, default: str, plain_prompt: bool) -> str:
    """The positions an input is read at: ``spec`` when given; else ``default``, except that a
    plain prompt read by a ``non_system`` default reads ``all`` (it has no system prompt to
    leave out, and no roles to find one by). An explicit ``non_system`` is left as asked."""
    if spec is not None:
        return spec
    return "all" if plain_prompt and default == "non_system" else default


def _overlapping(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[bool]:
    """For each token's character offsets ``(start, end)``, whether it overlaps one of
    ``spans`` (``start < span_end and end > span_start``).

    The spans are merged into sorted disjoint intervals, then one binary search per token
    (O(n log s)): testing every span for every token took seconds on a long chat.
    """
    merged: list[list[int]] = []
    for s, e in sorted(spans):
        if merged and s < merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    starts = [s for s, _ in merged]
    out = []
    for start, end in offsets:
        # among the intervals starting before the token's end, the last one reaches furthest
        k = bisect_right(starts, end - 1) - 1
        out.append(k >= 0 and merged[k][1] > start)
    return out


def _need_spans(tok: TokenizedInput, spec: str) -> list[tuple[str, int, int]]:
    if tok.spans is None:
        raise OracleInputError(
            f"positions {spec!r} need chat messages (roles); the input is a plain prompt"
        )
    if tok.span_error:
        raise OracleInputError(f"positions {spec!r} cannot be located: {tok.span_error}")
    return tok.spans


def select_positions(tok: TokenizedInput, spec: str) -> list[int]:
    """Indices into ``tok.input_ids`` chosen by ``spec``, ascending; never empty."""
    mode, arg = parse_positions(spec)
    n = len(tok)
    if mode == "all":
        chosen = list(range(n))
    elif mode == "last":
        chosen = list(range(max(0, n - arg), n))
    elif mode == "indices":
        chosen = []
        for index in arg:
            if not -n <= index < n:
                raise OracleInputError(
                    f"position {index} is out of range for an input of {n} tokens"
                )
            chosen.append(index % n)
        chosen = sorted(set(chosen))
    elif mode == "role":
        spans = [(s, e) for role, s, e in _need_spans(tok, spec) if role == arg]
        chosen = [i for i, hit in enumerate(_overlapping(tok.offsets, spans)) if hit]
    else:  # non_system
        spans = _need_spans(tok, spec)
        system = [(s, e) for role, s, e in spans if role == "system"]
        if not system:
            chosen = list(range(n))
        else:
            first_end = system[0][1]
            in_system = _overlapping(tok.offsets, system)
            chosen = [
                i
                for i, (off, hit) in enumerate(zip(tok.offsets, in_system, strict=True))
                if off[0] >= first_end and not hit
            ]
    if not chosen:
        raise OracleInputError(f"positions {spec!r} select no token of this input")
    return chosen
