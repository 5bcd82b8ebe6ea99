"""Controls: inputs that carry no information about the label, so the oracle should fail.

Each control takes the activation sets of a test set, ``list[(n_i, D)]``, and returns as many
sets of the same shapes. The ``no_system`` control changes the *conversation* instead (the
runner captures it without its system prompt), so it is not here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

CONTROL_NAMES = ("shuffled", "no_system", "zeros", "noise")


def derangement(n: int, seed: int) -> list[int]:
    """A seeded permutation of range(n) with no fixed point (identity for n < 2)."""
    if n < 2:
        return list(range(n))
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(n, generator=gen).tolist()
        if all(i != p for i, p in enumerate(perm)):
            return perm


def shuffled(acts: Sequence[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """Item i gets the activations of another item (a derangement across examples)."""
    return [acts[j] for j in derangement(len(acts), seed)]


def zeros(acts: Sequence[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """All-zero vectors: with norm-matched addition the injection then adds nothing."""
    return [torch.zeros_like(a) for a in acts]


def noise(acts: Sequence[torch.Tensor], seed: int = 0) -> list[torch.Tensor]:
    """Gaussian vectors rescaled to each position's own norm: (n_i, D) -> (n_i, D)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for a_PD in acts:
        g_PD = torch.randn(a_PD.shape, generator=gen, dtype=torch.float32)
        g_PD = g_PD / g_PD.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        out.append((g_PD * a_PD.float().norm(dim=-1, keepdim=True)).to(a_PD.dtype))
    return out


VECTOR_CONTROLS: dict[str, Callable[[Sequence[torch.Tensor], int], list[torch.Tensor]]] = {
    "shuffled": shuffled,
    "zeros": zeros,
    "noise": noise,
}
