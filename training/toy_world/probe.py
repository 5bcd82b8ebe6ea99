"""The linear probe the toy world's oracle is measured against.

Multinomial logistic regression on standardised features, fitted full-batch with L-BFGS, its
L2 weight chosen on a validation split. Features are what the oracle reads: the mean of the
read layer over a conversation's non-system tokens (secret, persona), or the first, last and
mean vectors of a context window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from oracle.capture import hidden_at_layers, pad_right
from oracle.inputs import TargetInput, tokenize_input
from oracle.positions import select_positions

L2_GRID = (1e-4, 1e-3, 1e-2, 1e-1)


@dataclass
class LinearProbe:
    """A fitted probe: ``predict(x_ND)`` gives class indices (N,)."""

    mean_D: torch.Tensor
    std_D: torch.Tensor
    w_DC: torch.Tensor
    b_C: torch.Tensor
    l2: float

    def logits(self, x_ND: torch.Tensor) -> torch.Tensor:
        return ((x_ND.double() - self.mean_D) / self.std_D) @ self.w_DC + self.b_C

    def predict(self, x_ND: torch.Tensor) -> torch.Tensor:
        return self.logits(x_ND).argmax(-1)


def fit_logreg(
    x_ND: torch.Tensor, y_N: torch.Tensor, n_classes: int, l2: float, max_iter: int = 300
) -> LinearProbe:
    """Multinomial logistic regression, mean cross-entropy + ``l2 * ||W||^2``."""
    x = x_ND.double()
    mean_D, std_D = x.mean(0), x.std(0, unbiased=False).clamp_min(1e-6)
    z_ND = (x - mean_D) / std_D
    w_DC = torch.zeros(z_ND.shape[1], n_classes, dtype=torch.double, requires_grad=True)
    b_C = torch.zeros(n_classes, dtype=torch.double, requires_grad=True)
    opt = torch.optim.LBFGS([w_DC, b_C], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z_ND @ w_DC + b_C, y_N) + l2 * w_DC.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(mean_D, std_D, w_DC.detach(), b_C.detach(), l2)


def fit_probe(
    x_ND: torch.Tensor,
    y_N: torch.Tensor,
    n_classes: int,
    grid: Sequence[float] = L2_GRID,
    seed: int = 0,
    max_select: int = 5000,
) -> LinearProbe:
    """Choose the L2 weight on a 20% validation split of at most ``max_select`` rows, then
    refit on every row."""
    if len(y_N) < 5:
        return fit_logreg(x_ND, y_N, n_classes, grid[len(grid) // 2])
    perm = torch.randperm(len(y_N), generator=torch.Generator().manual_seed(seed))[:max_select]
    cut = max(1, len(perm) // 5)
    val, fit = perm[:cut], perm[cut:]
    scores = []
    for l2 in grid:
        probe = fit_logreg(x_ND[fit], y_N[fit], n_classes, l2)
        scores.append((probe.predict(x_ND[val]) == y_N[val]).double().mean().item())
    best = grid[max(range(len(grid)), key=lambda i: scores[i])]
    return fit_logreg(x_ND, y_N, n_classes, best)


@torch.no_grad()
def read_features(
    model,
    tokenizer,
    inputs: Sequence[TargetInput],
    layer: int,
    positions: Sequence[str | list[int]],
    batch_size: int = 64,
) -> list[torch.Tensor]:
    """The read layer's vectors at each input's positions (a spec or explicit indices):
    a list of (n_i, D) float32 tensors. ``model`` runs as it is (disable an adapter first)."""
    toks = [tokenize_input(tokenizer, x) for x in inputs]
    chosen = [
        select_positions(t, p) if isinstance(p, str) else list(p)
        for t, p in zip(toks, positions, strict=True)
    ]
    order = sorted(range(len(toks)), key=lambda i: len(toks[i]))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    out: list[torch.Tensor | None] = [None] * len(toks)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids_BT, mask_BT = pad_right([toks[i].input_ids for i in idx], pad)
        h_BTD = hidden_at_layers(model, ids_BT.to(device), mask_BT.to(device), [layer])[layer]
        for b, i in enumerate(idx):
            out[i] = h_BTD[b, chosen[i]].float().cpu()
    return out  # type: ignore[return-value]


def window_summary(acts_ND: torch.Tensor) -> torch.Tensor:
    """A context window's probe features: its first, last and mean vectors, (3D,)."""
    return torch.cat([acts_ND[0], acts_ND[-1], acts_ND.mean(0)])
