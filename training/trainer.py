"""The oracle trainer: a transformers ``Trainer`` whose steps capture activations on the fly.

Each step (train or eval):

1. capture: the target's hidden states at each row's read layer, from the same model with the
   LoRA adapter disabled (peft's ``disable_adapter()``), under ``torch.no_grad()``, stopping
   after the deepest block read;
2. inject: those vectors (less the layer's mean activation for a centred oracle, pooled as the
   config says) are written at the oracle prompt's placeholders (``oracle.inject``),
   and the ordinary Trainer step runs inside that context, so the backward pass (and any
   gradient-checkpointing recomputation) sees the same injection;
3. the loss is the causal-LM loss on the answer tokens only (labels are -100 elsewhere). Where
   the model's forward takes ``logits_to_keep`` (transformers' causal LMs do), logits are
   computed only at the positions that predict an answer token: the same loss and gradients,
   without the unembedding of every placeholder.

Gradient accumulation, schedules, bf16, gradient checkpointing, length-grouped batches,
checkpoints, resume and DDP (torchrun/accelerate) are the Trainer's own.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainerCallback

from oracle.capture import hidden_at_layers
from oracle.centering import center
from oracle.inject import InjectionSpec, inject
from oracle.pooling import pool
from training.collate import IGNORE_INDEX

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

    def __init__(
        self,
        *args: Any,
        injection: InjectionSpec,
        means: dict[int, torch.Tensor] | None = None,
        pooling: str = "none",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.injection = injection
        self.means = means  # {layer: (D,)}: centred injection (oracle.centering)
        self.pooling = pooling  # oracle.pooling: how read vectors become injected ones

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
        if self.means is not None:
            vectors = [
                center(v, self.means[layer])
                for v, layer in zip(vectors, extra["layers"], strict=True)
            ]
        vectors = [pool(v, self.pooling) for v in vectors]
        seq_len = inputs["input_ids"].shape[1]
        ctx = inject(base, self.injection, extra["placeholder_positions"], vectors, seq_len)
        return inputs, ctx

    def _keeps_logits(self, model: nn.Module) -> bool:
        if not hasattr(self, "_logits_to_keep_ok"):
            base = self.accelerator.unwrap_model(model)
            inner = base.get_base_model() if hasattr(base, "get_base_model") else base
            params = inspect.signature(inner.forward).parameters
            self._logits_to_keep_ok = "logits_to_keep" in params
        return self._logits_to_keep_ok

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """The causal-LM loss on the answer tokens, with logits only where they are needed."""
        if "labels" not in inputs or not self._keeps_logits(model) or self.label_smoother:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        inputs = dict(inputs)
        labels_BT = inputs.pop("labels")
        next_BT = labels_BT[:, 1:]  # position t predicts token t + 1
        keep_U = (next_BT != IGNORE_INDEX).any(0).nonzero().squeeze(-1)
        outputs = model(**inputs, logits_to_keep=keep_U)
        logits_BUV = outputs.logits.float()
        target_BU = next_BT[:, keep_U].to(logits_BUV.device)
        loss_sum = nn.functional.cross_entropy(
            logits_BUV.flatten(0, 1),
            target_BU.flatten(),
            ignore_index=IGNORE_INDEX,
            reduction="sum",
        )
        scaled = self.model_accepts_loss_kwargs and num_items_in_batch is not None
        if scaled:
            loss = loss_sum / num_items_in_batch
            if self.args.average_tokens_across_devices:
                loss = loss * self.accelerator.num_processes
        else:
            loss = loss_sum / (target_BU != IGNORE_INDEX).sum().clamp_min(1)
        return (loss, outputs) if return_outputs else loss

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
