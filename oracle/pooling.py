"""Pooled injection: the read positions' vectors summarised before they reach the oracle.

- ``none``: one placeholder per read position (the Activation Oracles format);
- ``mean``: one placeholder, the mean over the read positions;
- ``mean_last``: two placeholders, the mean and the last read position.

The mean keeps what a whole span shares (a hidden persona or secret conditions every token
after the system prompt) and averages away what is particular to each token; the last position
keeps what the span ends on (the assistant header, where a conversation's reading is richest,
or the next-token prediction of a text window). A linear probe on those two summaries reads
SmolLM2's persona well (data/smol_world/README.md); an oracle given 20-30 separate vectors must
first learn to pool them itself, and its prompt is that much longer.
"""

from __future__ import annotations

import torch

from oracle.errors import OracleConfigError

POOLINGS = ("none", "mean", "mean_last")


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise OracleConfigError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    return pooling


def pooled_count(pooling: str, n_positions: int) -> int:
    """How many vectors (placeholders) ``n_positions`` read positions become."""
    return {"none": n_positions, "mean": 1, "mean_last": 2}[check_pooling(pooling)]


def pool(vectors_ND: torch.Tensor, pooling: str) -> torch.Tensor:
    """(N, D) read vectors -> (k, D) injected ones (differentiable; ``none`` returns them)."""
    check_pooling(pooling)
    if pooling == "none":
        return vectors_ND
    mean_1D = vectors_ND.mean(dim=0, keepdim=True)
    if pooling == "mean":
        return mean_1D
    return torch.cat([mean_1D, vectors_ND[-1:]], dim=0)
