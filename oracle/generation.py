"""Batched generation from token rows: left-pad each batch, generate, decode the new tokens.

The one loop behind the oracle's answers (an injection around each batch), the target's
replies (a steering vector or LoRA around each batch) and the black-box baseline (the target
asked in plain text).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from oracle.capture import pad_id_of
from oracle.layers import model_device

# (first row of the batch, ids (B, T), each row's left shift) -> what to enter around generate
BatchContext = Callable[[int, torch.Tensor, list[int]], contextlib.AbstractContextManager]


def pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Left-pad token rows for generation; returns ids (B, T), mask (B, T) and each row's shift."""
    width = max(len(r) for r in rows)
    ids_BT = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask_BT = torch.zeros((len(rows), width), dtype=torch.long)
    shifts = []
    for b, row in enumerate(rows):
        shift = width - len(row)
        ids_BT[b, shift:] = torch.tensor(row, dtype=torch.long)
        mask_BT[b, shift:] = 1
        shifts.append(shift)
    return ids_BT, mask_BT, shifts


def sampling_kwargs(temperature: float, top_p: float) -> dict:
    """``generate`` arguments: sampling at ``temperature`` and ``top_p``; greedy at 0."""
    if temperature > 0:
        return dict(do_sample=True, temperature=temperature, top_p=top_p)
    return dict(do_sample=False)


@torch.no_grad()
def generate_texts(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    rows: Sequence[list[int]],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 8,
    context: BatchContext | None = None,
) -> list[str]:
    """The decoded continuation of each token row (special tokens skipped, stripped), in order.

    Rows go ``batch_size`` at a time, left-padded so that every row ends in the last column;
    ``context(start, ids_BT, shifts)`` is entered around each batch's ``generate``. Greedy at
    temperature 0; ``seed`` seeds torch once, before the first batch.
    """
    if seed is not None:
        torch.manual_seed(seed)
    pad_id = pad_id_of(tokenizer)
    device = model_device(model)
    sampling = sampling_kwargs(temperature, top_p)
    texts: list[str] = []
    for start in range(0, len(rows), batch_size):
        ids_BT, mask_BT, shifts = pad_left(list(rows[start : start + batch_size]), pad_id)
        around = context(start, ids_BT, shifts) if context else contextlib.nullcontext()
        with around:
            out_BT = model.generate(
                input_ids=ids_BT.to(device),
                attention_mask=mask_BT.to(device),
                max_new_tokens=max_new_tokens,
                pad_token_id=pad_id,
                eos_token_id=tokenizer.eos_token_id,
                **sampling,
            )
        for row in out_BT[:, ids_BT.shape[1] :]:
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return texts
