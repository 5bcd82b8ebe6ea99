"""The black-box baselines: the target itself, reading the visible transcript as plain text.

- :func:`black_box`: what a user without this toolkit would do. The visible transcript (the
  non-system turns, or the text) goes to the target as one user message, followed by the
  question; its greedy reply is scored like any answer. For yes/no questions the reply is
  read leniently, and P(yes) (the target's next-token probabilities of its yes and no tokens,
  normalised over the two) decides when it says neither.
- :func:`continuation`: for "what comes next" items, the target continuing the text up to
  the read window's end (it sees the whole prefix, more than the oracle's window).

Both run the base model with the oracle adapter off, through ``Engine.transformers_oracle()``
(engines without a transformers copy of the target refuse them). The engine interface has no
method that continues token rows with the target and gives its P(yes); :func:`generate_rows`
is that, on the shared generation loop (:mod:`oracle.generation`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.capture import pad_id_of
from oracle.engines.base import Engine
from oracle.generation import generate_texts, pad_left
from oracle.layers import model_device
from oracle.prompts import answer_ids_of

INTRO_CONVERSATION = "Here is a conversation:"
INTRO_TEXT = "Here is a text:"


def render_transcript(conversation: list[dict[str, str]] | None, text: str | None) -> str:
    """The visible transcript as plain text: ``User: ...`` / ``Assistant: ...`` lines."""
    if conversation is None:
        return text or ""
    names = {"user": "User", "assistant": "Assistant"}
    return "\n".join(
        f"{names[m['role']]}: {m['content']}" for m in conversation if m["role"] in names
    )


def black_box_prompt(visible: str, question: str, is_conversation: bool) -> str:
    """One user message: the transcript, then the question."""
    intro = INTRO_CONVERSATION if is_conversation else INTRO_TEXT
    return f"{intro}\n\n{visible}\n\n{question}"


@torch.no_grad()
def generate_rows(
    engine: Engine,
    rows: Sequence[list[int]],
    max_new_tokens: int,
    batch_size: int = 16,
    yes_no: bool = False,
) -> tuple[list[str], list[float | None]]:
    """The target's greedy continuation of each token row (adapter off), and with ``yes_no``
    its P(yes) for the first reply token (normalised over its yes and no tokens)."""
    ao = engine.transformers_oracle()
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


def black_box(
    engine: Engine,
    visible: Sequence[str],
    questions: Sequence[str],
    is_conversation: Sequence[bool],
    max_new_tokens: int = 16,
    batch_size: int = 16,
    yes_no: bool = False,
) -> tuple[list[str], list[float | None]]:
    """The target asked each question about each visible transcript: (replies, P(yes))."""
    tok = engine.transformers_oracle().tokenizer
    rows = []
    for text, question, conv in zip(visible, questions, is_conversation, strict=True):
        prompt = black_box_prompt(text, question, conv)
        if getattr(tok, "chat_template", None):
            rendered = tok.apply_chat_template(
                [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
            )
            rows.append(tok.encode(rendered, add_special_tokens=False))
        else:
            rows.append(tok.encode(prompt + "\n", add_special_tokens=True))
    return generate_rows(engine, rows, max_new_tokens, batch_size, yes_no)


def continuation(
    engine: Engine, prefixes: Sequence[list[int]], n_tokens: Sequence[int], batch_size: int = 16
) -> list[str]:
    """The target's greedy next ``n_tokens[i]`` tokens after each token prefix (adapter off)."""
    out = [""] * len(prefixes)
    for k in sorted(set(n_tokens)):
        idx = [i for i, n in enumerate(n_tokens) if n == k]
        texts, _ = generate_rows(engine, [prefixes[i] for i in idx], k, batch_size)
        for i, t in zip(idx, texts, strict=True):
            out[i] = t
    return out
