"""Write activation vectors into the oracle's forward pass at placeholder positions.

Sites: ``embedding`` (the output of the token-embedding module, i.e. what ``inputs_embeds``
would be) or ``layer:k`` (the output of decoder block k). Modes, per placeholder position with
hidden state h and injected vector v:

- ``add`` (norm-matched addition, Activation Oracles): h <- h + coeff * ||h|| * v / ||v||
- ``replace`` (LatentQA): h <- v

The hook fires only on a forward pass over the whole prompt (the prefill), never on decode
steps, and is differentiable in ``v`` (steering backpropagates through it).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from oracle.errors import OracleInputError
from oracle.hooks import hooks
from oracle.layers import check_layer, get_decoder_layers, get_embedding

Mode = Literal["add", "replace"]


@dataclass(frozen=True)
class InjectionSpec:
    """Where and how to inject. ``site`` is ``embedding`` or ``layer:K``."""

    site: str = "layer:1"
    mode: Mode = "add"
    coefficient: float = 1.0

    def __post_init__(self) -> None:
        parse_site(self.site)
        if self.mode not in ("add", "replace"):
            raise OracleInputError(f"injection mode must be 'add' or 'replace', got {self.mode!r}")
        if not isinstance(self.coefficient, (int, float)) or not torch.isfinite(
            torch.tensor(float(self.coefficient))
        ):
            raise OracleInputError(f"coefficient must be a finite number, got {self.coefficient!r}")


def parse_site(site: str) -> int | None:
    """``embedding`` -> None, ``layer:K`` -> K."""
    if site == "embedding":
        return None
    kind, _, arg = str(site).partition(":")
    if kind == "layer" and arg.lstrip("-").isdigit():
        return int(arg)
    raise OracleInputError(f"injection site must be 'embedding' or 'layer:K', got {site!r}")


def site_module(model: nn.Module, site: str) -> nn.Module:
    layer = parse_site(site)
    if layer is None:
        return get_embedding(model)
    return get_decoder_layers(model)[check_layer(model, layer)]


def check_vectors(vectors: torch.Tensor, d_model: int, what: str = "activations") -> None:
    if vectors.ndim != 2:
        raise OracleInputError(
            f"{what} must be shaped (n_positions, d_model), got {tuple(vectors.shape)}"
        )
    if vectors.shape[0] == 0:
        raise OracleInputError(f"{what} hold no position")
    if vectors.shape[1] != d_model:
        raise OracleInputError(
            f"{what} have hidden size {vectors.shape[1]}, but the oracle's d_model is {d_model}"
        )
    if not torch.isfinite(vectors).all():
        raise OracleInputError(f"{what} contain NaN or inf")


def apply_injection(
    hidden_BTD: torch.Tensor,
    rows_N: torch.Tensor,
    cols_N: torch.Tensor,
    vectors_ND: torch.Tensor,
    spec: InjectionSpec,
) -> torch.Tensor:
    """Return a copy of ``hidden_BTD`` with the vectors written at (rows, cols)."""
    v_ND = vectors_ND.to(device=hidden_BTD.device, dtype=hidden_BTD.dtype)
    if spec.mode == "replace":
        new_ND = v_ND
    else:
        h_ND = hidden_BTD[rows_N, cols_N]
        h_norm_N1 = h_ND.norm(dim=-1, keepdim=True)
        direction_ND = v_ND / v_ND.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        new_ND = h_ND + spec.coefficient * h_norm_N1 * direction_ND
    out_BTD = hidden_BTD.clone()
    out_BTD[rows_N, cols_N] = new_ND
    return out_BTD


@contextmanager
def inject(
    model: nn.Module,
    spec: InjectionSpec,
    positions: Sequence[Sequence[int]],
    vectors: Sequence[torch.Tensor],
    seq_len: int,
) -> Iterator[None]:
    """Inject ``vectors[b]`` (n_b, D) at ``positions[b]`` of batch row b while inside the block.

    ``seq_len`` is the (padded) prompt length: only forward passes over exactly that many
    positions are modified, so generation's decode steps pass through untouched.
    """
    if len(positions) != len(vectors):
        raise OracleInputError("one list of positions per row of vectors is needed")
    rows, cols = [], []
    for b, (pos, vec) in enumerate(zip(positions, vectors, strict=True)):
        if len(pos) != vec.shape[0]:
            raise OracleInputError(
                f"row {b}: {len(pos)} placeholder positions but {vec.shape[0]} vectors"
            )
        rows += [b] * len(pos)
        cols += list(pos)
    rows_N = torch.tensor(rows, dtype=torch.long)
    cols_N = torch.tensor(cols, dtype=torch.long)
    vectors_ND = torch.cat(list(vectors), dim=0)

    def hook(_module, _inputs, output):
        hidden = output[0] if isinstance(output, tuple) else output
        if hidden.shape[1] != seq_len:
            return None
        new = apply_injection(
            hidden, rows_N.to(hidden.device), cols_N.to(hidden.device), vectors_ND, spec
        )
        return (new, *output[1:]) if isinstance(output, tuple) else new

    with hooks([(site_module(model, spec.site), "forward", hook)]):
        yield
