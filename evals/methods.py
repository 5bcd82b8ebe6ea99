"""The oracle and the training-free readout, asked in batches about activation sets.

Both take one question per activation set (items are asked in their own wordings) and, for
yes/no questions, also return P(yes), which the scoring uses when an answer says neither.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.engines.base import AnswerRequest, Engine


def ask_oracle(
    engine: Engine,
    sets: Sequence[torch.Tensor],
    questions: Sequence[str],
    layer: int,
    max_new_tokens: int,
    batch_size: int,
    yes_no: bool = False,
) -> tuple[list[str], list[float | None]]:
    """The oracle's answer to each question about its (n_i, D) set: (texts, P(yes))."""
    requests = [
        AnswerRequest(a, q, layer, max_new_tokens, yes_no=yes_no)
        for a, q in zip(sets, questions, strict=True)
    ]
    answers = []
    for start in range(0, len(requests), batch_size):
        answers += engine.answer(requests[start : start + batch_size])
    return [a.text for a in answers], [a.p_yes for a in answers]


def training_free(
    engine: Engine,
    sets: Sequence[torch.Tensor],
    questions: Sequence[str],
    layer: int,
    max_new_tokens: int,
    batch_size: int,
    yes_no: bool = False,
) -> tuple[list[str], list[float | None]]:
    """The same injection into the base model, the oracle adapter off (``Engine.answer_base``)."""
    return engine.answer_base(sets, questions, layer, max_new_tokens, batch_size, yes_no)
