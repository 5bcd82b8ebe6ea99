"""Hooks for steering: add a vector to a block's output, and read a block's output with gradients.

:func:`add_vector` adds ``scale * vector`` to the output of decoder block ``layer`` at every
position of every forward pass (prefill and decode steps alike), which is how a steering vector
is applied. :func:`read_block` runs a forward pass *with* autograd (unlike
:func:`oracle.capture.capture`, which runs under ``torch.no_grad``) and returns one block's
output, cutting the pass after that block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from oracle.capture import _block_output
from oracle.errors import OracleInputError
from oracle.hooks import StopForward, hooks
from oracle.layers import check_layer, get_decoder_layers, hidden_size


def check_steering_vector(model: nn.Module, vector: torch.Tensor, scale: float = 1.0) -> None:
    """Raise :class:`OracleInputError` unless ``vector`` is a finite (d_model,) tensor."""
    if not isinstance(vector, torch.Tensor):
        raise OracleInputError("the steering vector must be a tensor")
    d_model = hidden_size(model)
    if vector.ndim != 1 or vector.shape[0] != d_model:
        raise OracleInputError(
            f"the steering vector has shape {tuple(vector.shape)}, but the target needs "
            f"({d_model},) (its hidden size)"
        )
    if not torch.isfinite(vector).all():
        raise OracleInputError("the steering vector contains NaN or inf")
    try:
        finite = torch.isfinite(torch.tensor(float(scale))).item()
    except (TypeError, ValueError):
        finite = False
    if not finite:
        raise OracleInputError(f"scale must be a finite number, got {scale!r}")


@contextmanager
def add_vector(
    model: nn.Module,
    layer: int,
    vector_D: torch.Tensor,
    scale: float = 1.0,
    mask_BT: torch.Tensor | None = None,
    decode: bool = True,
) -> Iterator[None]:
    """While inside, block ``layer``'s output h becomes ``h + scale * vector_D`` at every position.

    ``mask_BT`` (B, T) of 0/1: add only where it is 1, in forward passes of that shape; a
    forward pass of one position per row (a decode step after the prefill) gets the vector
    everywhere. So a mask marking the prompt's last position steers a reply from its first
    token on, and leaves the prompt as the model reads it unsteered. ``decode=False``: with a
    mask, decode steps get nothing (with the last position marked: the reply's first token is
    steered, the rest read it through attention).
    Differentiable in ``vector_D``. ``vector_D``: (d_model,).
    """
    check_steering_vector(model, vector_D.detach(), scale)
    block = get_decoder_layers(model)[check_layer(model, layer)]

    def hook(_module, _inputs, output):
        hidden_BTD = _block_output(output)
        delta_D = (scale * vector_D).to(device=hidden_BTD.device, dtype=hidden_BTD.dtype)
        if mask_BT is not None and tuple(mask_BT.shape) == tuple(hidden_BTD.shape[:2]):
            weight_BT1 = mask_BT.to(device=hidden_BTD.device, dtype=hidden_BTD.dtype)[..., None]
            new_BTD = hidden_BTD + weight_BT1 * delta_D
        elif mask_BT is not None and hidden_BTD.shape[1] != 1:
            raise OracleInputError(
                f"the steering mask has shape {tuple(mask_BT.shape)}, the forward pass "
                f"{tuple(hidden_BTD.shape[:2])}"
            )
        elif mask_BT is not None and not decode:
            return None
        else:
            new_BTD = hidden_BTD + delta_D
        return (new_BTD, *output[1:]) if isinstance(output, tuple) else new_BTD

    with hooks([(block, "forward", hook)]):
        yield


def read_block(
    model: nn.Module,
    input_ids_BT: torch.Tensor,
    attention_mask_BT: torch.Tensor | None,
    layer: int,
) -> torch.Tensor:
    """Output of block ``layer`` (B, T, D), keeping the autograd graph; later blocks do not run."""
    block = get_decoder_layers(model)[check_layer(model, layer)]
    seen: dict[str, torch.Tensor] = {}

    def hook(_module, _inputs, output):
        seen["hidden"] = _block_output(output)
        raise StopForward

    with hooks([(block, "forward", hook)]):
        try:
            model(input_ids=input_ids_BT, attention_mask=attention_mask_BT, use_cache=False)
        except StopForward:
            pass
    if "hidden" not in seen:
        raise RuntimeError(f"block {layer} did not run in the forward pass")
    return seen["hidden"]


@contextmanager
def finite_logits(model: nn.Module) -> Iterator[None]:
    """While inside, a forward pass of ``model`` whose logits are not finite raises
    :class:`OracleInputError`: a finite but huge steering vector overflows the model's numbers,
    and sampling from such logits would fail with an internal error."""
    head = model.get_output_embeddings()
    if head is None:
        raise OracleInputError(f"{type(model).__name__} has no output embeddings (LM head)")

    def hook(_module, _inputs, logits):
        if not torch.isfinite(logits).all():
            raise OracleInputError(
                "the steered model's outputs are not finite: the steering vector times its "
                "scale is too large for the model; lower the scale or the vector's norm"
            )

    with hooks([(head, "forward", hook)]):
        yield


@contextmanager
def active_adapter(model: nn.Module, name: str) -> Iterator[None]:
    """Run a peft model with only the adapter ``name`` active (frozen); restore the previous."""
    from peft import PeftModel

    if not isinstance(model, PeftModel) or name not in model.peft_config:
        raise OracleInputError(f"the target has no adapter named {name!r}")
    previous = model.active_adapter
    model.set_adapter(name, inference_mode=True)
    try:
        yield
    finally:
        model.set_adapter(previous, inference_mode=True)
