"""Baselines that need the models: black-box (ask the target) and the training-free readout.

Both reach the transformers model through :class:`~oracle.engines.hf.HFEngine` (its
``ActivationOracle``), because both need the oracle adapter switched off, which only the HF
engine exposes. The linear probe, which needs activations only, is in :mod:`evals.probe`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.capture import pad_id_of
from oracle.engines.base import Engine
from oracle.errors import OracleInputError
from oracle.layers import model_device
from oracle.oracle import ActivationOracle, pad_left


def hf_oracle_of(engine: Engine) -> ActivationOracle:
    """The :class:`ActivationOracle` behind an HF engine; other engines fail clearly."""
    ao = getattr(engine, "oracle", None)
    if not isinstance(ao, ActivationOracle):
        raise OracleInputError(
            f"the black-box and training-free baselines need the 'hf' engine, not {engine.name!r}"
        )
    return ao


@torch.no_grad()
def black_box(
    ao: ActivationOracle,
    conversations: Sequence[list[dict[str, str]]],
    question: str,
    max_new_tokens: int = 16,
    batch_size: int = 8,
) -> list[str]:
    """Ask the target itself: each conversation plus ``question`` as a new user turn.

    Runs the base model (oracle adapter off), greedy; returns the generated replies.
    """
    tok = ao.tokenizer
    if not getattr(tok, "chat_template", None):
        raise OracleInputError("the black-box baseline needs a target with a chat template")
    rows = []
    for messages in conversations:
        text = tok.apply_chat_template(
            [*messages, {"role": "user", "content": question}],
            tokenize=False,
            add_generation_prompt=True,
        )
        rows.append(tok.encode(text, add_special_tokens=False))
    replies: list[str] = []
    device = model_device(ao.target)
    with ao.adapter_disabled():
        for start in range(0, len(rows), batch_size):
            ids_BT, mask_BT, _ = pad_left(rows[start : start + batch_size], pad_id_of(tok))
            out_BT = ao.target.generate(
                input_ids=ids_BT.to(device),
                attention_mask=mask_BT.to(device),
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=pad_id_of(tok),
                eos_token_id=tok.eos_token_id,
            )
            for row in out_BT[:, ids_BT.shape[1] :]:
                replies.append(tok.decode(row, skip_special_tokens=True).strip())
    return replies


def training_free(
    ao: ActivationOracle,
    activations: Sequence[torch.Tensor],
    question: str,
    layer: int | None = None,
    max_new_tokens: int = 16,
    batch_size: int = 8,
) -> list[str]:
    """The same injection into the base model, the oracle adapter off: (n_i, D) sets -> answers."""
    with ao.adapter_disabled():
        return ao.answer(
            list(activations),
            [question] * len(activations),
            layer,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
        )
