"""Baselines that need the models: black-box (ask the target) and the training-free readout.

Both reach the transformers model through ``Engine.transformers_oracle()`` (the
``ActivationOracle`` of the hf engine, and of the vllm engine beside vLLM), because both need
the oracle adapter switched off. The linear probe, which needs activations only, is in :mod:`evals.probe`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.engines.base import Engine
from oracle.errors import OracleInputError
from oracle.generation import generate_texts
from oracle.oracle import ActivationOracle


def hf_oracle_of(engine: Engine) -> ActivationOracle:
    """The transformers :class:`ActivationOracle` an engine keeps (``Engine.transformers_oracle``);
    other engines fail clearly."""
    return engine.transformers_oracle()


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
    with ao.adapter_disabled():
        return generate_texts(ao.target, tok, rows, max_new_tokens, batch_size=batch_size)


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
