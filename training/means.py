"""The mean activation of each read layer over training rows (for centred injection,
:mod:`oracle.centering`), computed once when training starts and saved with the oracle."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from datasets import Dataset
from torch import nn

from oracle.capture import hidden_at_layers, pad_right
from oracle.centering import MEAN_FILE, MeanAccumulator, save_means

log = logging.getLogger(__name__)


@torch.no_grad()
def activation_means(
    model: nn.Module,
    features: Dataset,
    layers: list[int],
    pad_id: int,
    n_rows: int = 512,
    batch_size: int = 16,
) -> dict[int, torch.Tensor]:
    """``{layer: (D,) float32}``: the mean over the read positions of the first ``n_rows``
    prepared rows (``training.prepare``), at every layer of ``layers`` (so that a layer drawn
    rarely still gets its mean from every row). ``model`` is the base model (no adapter)."""
    acc = MeanAccumulator()
    rows = features.select(range(min(n_rows, len(features))))
    device = next(model.parameters()).device
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        ids_BS, mask_BS = pad_right(chunk["target_ids"], pad_id)
        seen = hidden_at_layers(model, ids_BS.to(device), mask_BS.to(device), sorted(set(layers)))
        for layer in set(layers):
            for b, positions in enumerate(chunk["read_positions"]):
                acc.add(layer, seen[layer][b, positions].float())
    means = acc.means()
    log.info(
        "mean activation over %d rows: %s",
        len(rows),
        ", ".join(f"layer {k} norm {v.norm():.1f}" for k, v in sorted(means.items())),
    )
    return means


def load_or_compute_means(
    model: nn.Module,
    features: Dataset,
    layers: list[int],
    pad_id: int,
    n_rows: int,
    out_dir: Path,
) -> dict[int, torch.Tensor]:
    """The means saved in ``out_dir`` by an earlier start of this run (a resumed run must
    inject exactly as before), else computed now and saved there."""
    from safetensors.torch import load_file

    path = out_dir / MEAN_FILE
    if path.is_file():
        saved = {int(k.split(".")[1]): v for k, v in load_file(str(path)).items()}
        if set(layers) <= set(saved):
            log.info("mean activations read from %s (a resumed run)", path)
            return {layer: saved[layer] for layer in layers}
    means = activation_means(model, features, layers, pad_id, n_rows)
    save_means(means, out_dir)
    return means
