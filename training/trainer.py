"""The oracle trainer: a transformers ``Trainer`` whose steps capture activations on the fly.

Each step (train or eval):

1. capture: the target's hidden states at each row's read layer, from the same model with the
   LoRA adapter disabled (peft's ``disable_adapter()``), under ``torch.no_grad()``, stopping
   after the deepest block read;
2. inject: those vectors are written at the oracle prompt's placeholders (``oracle.inject``),
   and the ordinary Trainer step runs inside that context, so the backward pass (and any
   gradient-checkpointing recomputation) sees the same injection;
3. the loss is the causal-LM loss on the answer tokens only (labels are -100 elsewhere).

Gradient accumulation, schedules, bf16, gradient checkpointing, length-grouped batches,
checkpoints, resume and DDP (torchrun/accelerate) are the Trainer's own.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from oracle.capture import hidden_at_layers
from oracle.inject import InjectionSpec, inject

log = logging.getLogger(__name__)

_ORACLE_FIELDS = ("target_ids", "target_mask", "layers", "read_positions", "placeholder_positions")


def capture_vectors(
    model: nn.Module,
    target_ids_BS: torch.Tensor,
    target_mask_BS: torch.Tensor,
    layers: list[int],
    read_positions: list[list[int]],
) -> list[torch.Tensor]:
    """Row b's activations at ``layers[b]`` and ``read_positions[b]``: a list of (n_b, D).

    Runs the base model (adapter off when ``model`` is a peft model), without gradients.
    """
    adapter_off = (
        model.disable_adapter() if hasattr(model, "disable_adapter") else contextlib.nullcontext()
    )
    with adapter_off, torch.no_grad():
        seen = hidden_at_layers(model, target_ids_BS, target_mask_BS, sorted(set(layers)))
    return [
        seen[layer][b, pos].detach()
        for b, (layer, pos) in enumerate(zip(layers, read_positions, strict=True))
    ]


class OracleTrainer(Trainer):
    """``Trainer`` for oracle batches from :class:`training.collate.OracleCollator`."""

    def __init__(self, *args: Any, injection: InjectionSpec, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.injection = injection

    def _oracle_context(
        self, model: nn.Module, inputs: dict[str, Any]
    ) -> tuple[dict[str, Any], contextlib.AbstractContextManager]:
        """Split off the capture fields, capture, and return (model inputs, injection context)."""
        inputs = dict(inputs)
        extra = {k: inputs.pop(k) for k in _ORACLE_FIELDS}
        base = self.accelerator.unwrap_model(model)
        device = next(base.parameters()).device
        with self.autocast_smart_context_manager():  # the capture runs in the step's precision
            vectors = capture_vectors(
                base,
                extra["target_ids"].to(device),
                extra["target_mask"].to(device),
                extra["layers"],
                extra["read_positions"],
            )
        seq_len = inputs["input_ids"].shape[1]
        ctx = inject(base, self.injection, extra["placeholder_positions"], vectors, seq_len)
        return inputs, ctx

    def training_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor:
        model_inputs, ctx = self._oracle_context(model, inputs)
        with ctx:
            return super().training_step(model, model_inputs, num_items_in_batch)

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ):
        model_inputs, ctx = self._oracle_context(model, inputs)
        with ctx:
            return super().prediction_step(model, model_inputs, True, ignore_keys)


class LossLogger(TrainerCallback):
    """Send the Trainer's periodic logs (loss, learning rate, eval loss) to ``logging``."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: D102
        if logs and state.is_world_process_zero:
            entry = {"step": state.global_step, **{k: float(v) for k, v in logs.items()}}
            self.history.append(entry)
            shown = ", ".join(f"{k}={v:.4g}" for k, v in entry.items())
            log.info("%s", shown)
