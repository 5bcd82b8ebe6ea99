"""The vLLM worker extension that injects activations at decoder block k, inside vLLM's workers.

Transport: the engine sends every oracle prompt as ``prompt_embeds`` (T, D). At each placeholder
row that carries an activation, the row is the activation's *direction* times a flag norm
(:data:`FLAG_NORM`, far above any token embedding's norm). Norm-matched addition needs only the
direction, so nothing else has to travel, and the data stays inside its request: batching,
chunked prefill and scheduling need no side channel.

Inside the worker two hooks (installed once with ``collective_rpc("oracle_install", ...)``):

- a forward pre-hook on decoder block 0 finds the flagged rows (norm > :data:`FLAG_THRESHOLD`)
  of the flattened token batch (N, D), remembers their directions and writes the placeholder
  token's own embedding back there, so block 0 sees the same input as in transformers;
- a forward hook on block k adds ``coeff * ||h|| * direction`` to those rows, where h is the
  block's output as transformers sees it: vLLM blocks return ``(delta, residual)`` and their
  sum is transformers' hidden state.

Decode steps carry no flagged rows and pass through untouched. vLLM must run with
``enforce_eager=True`` (compiled graphs skip Python hooks).
"""

from __future__ import annotations

import logging
from contextlib import ExitStack

import torch
from torch import nn

from oracle.hooks import hooks

log = logging.getLogger(__name__)

FLAG_NORM = 1.0e4
FLAG_THRESHOLD = 1.0e3


def find_decoder_layers(model: nn.Module, n_layers: int) -> nn.ModuleList:
    """The decoder block list of a vLLM model: the ModuleList of ``n_layers`` named ``*layers``/``*h``."""
    found = [
        module
        for name, module in model.named_modules()
        if isinstance(module, nn.ModuleList)
        and len(module) == n_layers
        and name.rsplit(".", 1)[-1] in ("layers", "h")
    ]
    if len(found) != 1:
        raise RuntimeError(
            f"cannot find one decoder block list of {n_layers} blocks in "
            f"{type(model).__name__} (found {len(found)})"
        )
    return found[0]


def _hidden_arg(args: tuple, d_model: int) -> int:
    """Index of the hidden-states argument (N, D) of a block: the first float tensor of width D."""
    for i, arg in enumerate(args):
        if (
            isinstance(arg, torch.Tensor)
            and arg.is_floating_point()
            and arg.ndim == 2
            and arg.shape[-1] == d_model
        ):
            return i
    raise RuntimeError("block 0 was called without a positional (N, d_model) hidden-states tensor")


class InjectionState:
    """The two hooks and what the first passes to the second within one forward pass."""

    def __init__(
        self, coefficient: float, placeholder_embedding_D: torch.Tensor, d_model: int
    ) -> None:
        self.coefficient = coefficient
        self.placeholder_D = placeholder_embedding_D
        self.d_model = d_model
        self.rows_N: torch.Tensor | None = None
        self.directions_ND: torch.Tensor | None = None

    def before_block0(self, _module: nn.Module, args: tuple):
        i = _hidden_arg(args, self.d_model)
        hidden_TD = args[i]
        norms_T = hidden_TD.float().norm(dim=-1)
        rows_N = (norms_T > FLAG_THRESHOLD).nonzero().flatten()
        if rows_N.numel() == 0:
            self.rows_N = self.directions_ND = None
            return None
        flagged_ND = hidden_TD[rows_N].float()
        self.rows_N = rows_N
        self.directions_ND = flagged_ND / flagged_ND.norm(dim=-1, keepdim=True)
        restored_TD = hidden_TD.clone()
        restored_TD[rows_N] = self.placeholder_D.to(hidden_TD.device, hidden_TD.dtype)
        return (*args[:i], restored_TD, *args[i + 1 :])

    def after_block_k(self, _module: nn.Module, _args: tuple, output):
        if self.rows_N is None:
            return None
        rows_N, directions_ND = self.rows_N, self.directions_ND
        self.rows_N = self.directions_ND = None
        if isinstance(output, tuple) and len(output) == 2 and output[1] is not None:
            delta_TD, residual_TD = output
            hidden_ND = (delta_TD[rows_N] + residual_TD[rows_N]).float()
        else:
            delta_TD, residual_TD = (output[0] if isinstance(output, tuple) else output), None
            hidden_ND = delta_TD[rows_N].float()
        add_ND = self.coefficient * hidden_ND.norm(dim=-1, keepdim=True) * directions_ND
        new_delta_TD = delta_TD.clone()
        new_delta_TD[rows_N] = (delta_TD[rows_N].float() + add_ND).to(delta_TD.dtype)
        if residual_TD is not None:
            return (new_delta_TD, residual_TD)
        return (new_delta_TD, *output[1:]) if isinstance(output, tuple) else new_delta_TD


class OracleWorkerExtension:
    """Mixed into vLLM's worker (``LLM(worker_extension_cls=...)``); called by ``collective_rpc``."""

    def oracle_install(
        self,
        layer: int,
        n_layers: int,
        coefficient: float,
        placeholder_embedding: list[float],
    ) -> bool:
        """Put the injection hooks on block 0 (pre) and block ``layer`` (post); idempotent."""
        self.oracle_remove()
        model = self.model_runner.model  # type: ignore[attr-defined]
        blocks = find_decoder_layers(model, n_layers)
        state = InjectionState(
            coefficient, torch.tensor(placeholder_embedding), len(placeholder_embedding)
        )
        stack = ExitStack()
        stack.enter_context(
            hooks(
                [
                    (blocks[0], "forward_pre", state.before_block0),
                    (blocks[layer], "forward", state.after_block_k),
                ]
            )
        )
        self._oracle_hooks = stack
        log.info("oracle injection hooks installed at block %d", layer)
        return True

    def oracle_remove(self) -> bool:
        """Remove the injection hooks, if any."""
        stack = getattr(self, "_oracle_hooks", None)
        if stack is not None:
            stack.close()
            self._oracle_hooks = None
        return True
