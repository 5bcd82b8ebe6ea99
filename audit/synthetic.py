"""Synthetic logs (random activations) of a given size: for tests and the audit benchmark."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from audit.logformat import LogManifest
from audit.writer import LogRecord, LogWriter


def write_synthetic_log(
    out: str | Path,
    n_records: int,
    d_model: int,
    n_positions: int = 8,
    layer: int = 1,
    shard_records: int = 64,
    seed: int = 0,
    model: str = "synthetic",
) -> LogManifest:
    """A complete log of ``n_records`` records, each (n_positions, d_model) float32 noise.

    Record ``i`` is ``s{i}@L{layer}`` of conversation ``s{i}``; its text says which record it
    is. Size on disk is about ``n_records * n_positions * d_model * 4`` bytes.
    """
    gen = torch.Generator().manual_seed(seed)
    with LogWriter(
        out, model, [layer], d_model, "float32", "all", shard_records, {"synthetic": True}
    ) as writer:
        for i in range(n_records):
            if f"s{i}" in writer.done_conversations:
                continue
            acts_PD = torch.randn(n_positions, d_model, generator=gen)
            writer.add_conversation(
                [
                    LogRecord(
                        record_id=f"s{i}@L{layer}",
                        conversation_id=f"s{i}",
                        layer=layer,
                        activations=acts_PD,
                        positions=list(range(n_positions)),
                        token_ids=list(range(n_positions)),
                        text=f"synthetic record {i}",
                        metadata=json.dumps({"i": i}),
                    )
                ]
            )
    return writer.manifest
