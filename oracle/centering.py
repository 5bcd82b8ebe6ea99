"""Mean-centred injection: subtract the read layer's mean activation before injecting.

A decoder's residual stream has a large common component: on SmolLM2-135M the vectors after
block 15 at the last token have a cosine of 0.975 with their mean, which holds 95% of their
squared norm (block 28: 0.94 and 88%, most of it in one dimension). Norm-matched addition
injects the direction ``v / ||v||``, which is then mostly that shared mean, and the part that
differs between inputs (the persona, the secret) reaches the oracle at a fraction of the
injected norm. Subtracting the mean first injects what distinguishes the input, at full norm.

The mean of each read layer is taken over the training rows' read positions when training
starts and saved in the oracle directory as ``activation_mean.safetensors`` (one (D,) float32
tensor per layer, key ``layer.{L}``); ``oracle_config.json``'s ``centered`` says to use it.
Every path that injects (answers, P(yes), the vllm engine, steering) centres the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import torch

from oracle.errors import OracleConfigError

MEAN_FILE = "activation_mean.safetensors"


def save_means(means: dict[int, torch.Tensor], directory: str | Path) -> Path:
    """Write ``{layer: (D,)}`` means to ``directory/activation_mean.safetensors``."""
    from safetensors.torch import save_file

    path = Path(directory) / MEAN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {
        f"layer.{layer}": m.detach().float().cpu().contiguous() for layer, m in means.items()
    }
    save_file(tensors, str(path))
    return path


def load_means(
    directory: str | Path, layers: Iterable[int], d_model: int
) -> dict[int, torch.Tensor]:
    """The means of ``layers`` from an oracle directory; a missing file or layer fails."""
    from safetensors.torch import load_file

    path = Path(directory) / MEAN_FILE
    if not path.is_file():
        raise OracleConfigError(
            f"the oracle is centred (oracle_config.json: centered=true) but {str(path)!r} is "
            "missing; it is written by training beside the adapter"
        )
    tensors = load_file(str(path))
    means = {}
    for layer in layers:
        mean = tensors.get(f"layer.{layer}")
        if mean is None or tuple(mean.shape) != (d_model,):
            raise OracleConfigError(
                f"{MEAN_FILE} lacks a ({d_model},) mean for read layer {layer} "
                f"(it has {sorted(tensors)})"
            )
        means[layer] = mean
    return means


def center(vectors_ND: torch.Tensor, mean_D: torch.Tensor | None) -> torch.Tensor:
    """``vectors - mean`` in the vectors' dtype and device (the vectors as they are with no
    mean). Differentiable in ``vectors`` (steering backpropagates through it)."""
    if mean_D is None:
        return vectors_ND
    return vectors_ND - mean_D.to(device=vectors_ND.device, dtype=vectors_ND.dtype)


class MeanAccumulator:
    """Running per-layer mean of activation vectors (float64 sums, so order does not matter)."""

    def __init__(self) -> None:
        self.sums: dict[int, torch.Tensor] = {}
        self.counts: dict[int, int] = {}

    def add(self, layer: int, vectors_ND: torch.Tensor) -> None:
        total = vectors_ND.detach().double().sum(0).cpu()
        self.sums[layer] = self.sums.get(layer, 0) + total
        self.counts[layer] = self.counts.get(layer, 0) + vectors_ND.shape[0]

    def means(self) -> dict[int, torch.Tensor]:
        return {layer: (s / self.counts[layer]).float() for layer, s in self.sums.items()}
