"""The target and the bare base model, run in transformers beside an engine's answers: what
the evaluation's baselines and the service's steered readings need beyond capture and answer.

Each function takes the :class:`~oracle.oracle.ActivationOracle` an engine keeps in
transformers; callers reach them through the engine's methods of the same names
(:class:`~oracle.engines.base.Engine`), never through the model itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.capture import pad_id_of
from oracle.generation import generate_texts, pad_left
from oracle.layers import model_device
from oracle.oracle import ActivationOracle
from oracle.prompts import answer_ids_of


@torch.no_grad()
def continue_rows(
    ao: ActivationOracle,
    rows: Sequence[list[int]],
    max_new_tokens: int,
    batch_size: int = 16,
    yes_no: bool = False,
) -> tuple[list[str], list[float | None]]:
    """The target's greedy continuation of each token row (adapter off), and with ``yes_no``
    its P(yes) for the first reply token (normalised over its yes and no tokens)."""
    model, tok = ao.target, ao.tokenizer
    p_yes: list[float | None] = [None] * len(rows)
    with ao.adapter_disabled():
        texts = generate_texts(model, tok, rows, max_new_tokens, batch_size=batch_size)
        yes_id, no_id = answer_ids_of(tok, "Yes")[0], answer_ids_of(tok, "No")[0]
        if yes_no and yes_id != no_id:
            p_yes = []
            device = model_device(model)
            for start in range(0, len(rows), batch_size):
                ids_BT, mask_BT, _ = pad_left(
                    list(rows[start : start + batch_size]), pad_id_of(tok)
                )
                logits_BTV = model(
                    input_ids=ids_BT.to(device), attention_mask=mask_BT.to(device), use_cache=False
                ).logits
                pair_B2 = logits_BTV[:, -1, [yes_id, no_id]].float().softmax(-1)
                p_yes += pair_B2[:, 0].tolist()
    return texts, p_yes


def user_turn_rows(ao: ActivationOracle, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text as one user message awaiting the target's reply: its chat
    template with the generation prompt, or for a model without one the text and a newline."""
    tok = ao.tokenizer
    rows = []
    for text in texts:
        if getattr(tok, "chat_template", None):
            rendered = tok.apply_chat_template(
                [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
            )
            rows.append(tok.encode(rendered, add_special_tokens=False))
        else:
            rows.append(tok.encode(text + "\n", add_special_tokens=True))
    return rows


def answer_base(
    ao: ActivationOracle,
    sets: Sequence[torch.Tensor],
    questions: Sequence[str],
    layer: int,
    max_new_tokens: int,
    batch_size: int,
    yes_no: bool = False,
) -> tuple[list[str], list[float | None]]:
    """The oracle's injection and prompt into the base model, the adapter off (the
    training-free readout): (texts, P(yes) where ``yes_no``)."""
    with ao.adapter_disabled():
        texts = ao.answer(
            list(sets), list(questions), layer, max_new_tokens=max_new_tokens, batch_size=batch_size
        )
        p_yes: list[float | None] = [None] * len(texts)
        if yes_no:
            p_yes = list(ao.p_yes(list(sets), list(questions), layer, batch_size=batch_size))
    return texts, p_yes
