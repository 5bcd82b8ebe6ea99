"""Batch prepared features: right-padded target and oracle token ids, labels on answers only.

Right padding leaves a causal model's outputs at the real tokens unchanged, so read positions
and placeholder positions need no shift. The per-row fields the capture needs (layer, read
positions, placeholder positions) stay Python lists.
"""

from __future__ import annotations

from typing import Any

import torch

from oracle.capture import pad_right

IGNORE_INDEX = -100
ORACLE_KEYS = ("target_ids", "target_mask", "layers", "read_positions", "placeholder_positions")


class OracleCollator:
    """``__call__(features) -> batch`` for :class:`training.trainer.OracleTrainer`.

    Batch: input_ids/attention_mask/labels (B, T) for the oracle, target_ids/target_mask
    (B, S) for the capture pass, and lists layers[b], read_positions[b],
    placeholder_positions[b].
    """

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        target_ids_BS, target_mask_BS = pad_right([f["target_ids"] for f in features], self.pad_id)
        input_ids_BT, mask_BT = pad_right([f["input_ids"] for f in features], self.pad_id)
        labels_BT = torch.full_like(input_ids_BT, IGNORE_INDEX)
        for b, f in enumerate(features):
            start, end = f["answer_start"], len(f["input_ids"])
            labels_BT[b, start:end] = input_ids_BT[b, start:end]
        return {
            "input_ids": input_ids_BT,
            "attention_mask": mask_BT,
            "labels": labels_BT,
            "target_ids": target_ids_BS,
            "target_mask": target_mask_BS,
            "layers": [int(f["layer"]) for f in features],
            "read_positions": [list(f["read_positions"]) for f in features],
            "placeholder_positions": [list(f["placeholder_positions"]) for f in features],
        }
