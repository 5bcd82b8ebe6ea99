"""The oracle's prompt: ``Layer {layer}:`` + one placeholder token per activation + the question.

The prompt goes through the oracle tokenizer's chat template (as a user turn with the
generation prompt) when it has one, and is plain text otherwise. Placeholder token ids are
inserted directly, never re-tokenised, so their count and positions are exact.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from oracle.errors import OracleInputError
from oracle.inputs import has_chat_template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

DEFAULT_TEMPLATE = "Layer {layer}:{placeholders}\n{question}"
_SENTINEL = "\u2063ORACLE_PLACEHOLDERS\u2063"


@dataclass
class OraclePrompt:
    """Token ids of one oracle prompt; ``answer_start`` marks supervised answer tokens."""

    input_ids: list[int]
    placeholder_positions: list[int]
    answer_start: int | None = None


def placeholder_id(tokenizer: PreTrainedTokenizerBase, placeholder: str) -> int:
    ids = tokenizer.encode(placeholder, add_special_tokens=False)
    if len(ids) != 1:
        raise OracleInputError(
            f"the placeholder {placeholder!r} is {len(ids)} tokens in this tokenizer; "
            "choose a string that is exactly one token"
        )
    return ids[0]


def _render(tokenizer: PreTrainedTokenizerBase, content: str) -> str:
    if has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
        )
    bos = tokenizer.bos_token or ""
    return f"{bos}{content}\nAnswer:"


def answer_ids_of(tokenizer: PreTrainedTokenizerBase, answer: str) -> list[int]:
    """Token ids of an answer as it follows the oracle prompt (no EOS)."""
    text = answer.strip() if has_chat_template(tokenizer) else " " + answer.strip()
    return tokenizer.encode(text, add_special_tokens=False)


def _prompt_parts(
    tokenizer: PreTrainedTokenizerBase, question: str, layer: int, placeholder: str, template: str
) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    """The ids before the placeholders, the placeholder id and the ids after them. Cached:
    a server renders the same few questions thousands of times, and the chat template and
    tokenizer calls cost more than the oracle's forward pass on a small model. The key holds
    the template and BOS token, so a tokenizer changed in place is rendered afresh."""
    chat = getattr(tokenizer, "chat_template", None)
    key = (chat if isinstance(chat, str) else repr(chat), tokenizer.bos_token, len(tokenizer))
    return _cached_parts(tokenizer, key, question, layer, placeholder, template)


@functools.lru_cache(maxsize=4096)
def _cached_parts(
    tokenizer: PreTrainedTokenizerBase,
    _key: tuple,
    question: str,
    layer: int,
    placeholder: str,
    template: str,
) -> tuple[tuple[int, ...], int, tuple[int, ...]]:
    content = template.format(layer=layer, placeholders=_SENTINEL, question=question)
    text = _render(tokenizer, content)
    if text.count(_SENTINEL) != 1:
        raise OracleInputError("the prompt template must contain {placeholders} exactly once")
    before, after = text.split(_SENTINEL)
    ph = placeholder_id(tokenizer, placeholder)
    ids_before = tokenizer.encode(before, add_special_tokens=False)
    ids_after = tokenizer.encode(after, add_special_tokens=False)
    return tuple(ids_before), ph, tuple(ids_after)


def build_oracle_prompt(
    tokenizer: PreTrainedTokenizerBase,
    question: str,
    n_positions: int,
    layer: int,
    placeholder: str = " ?",
    template: str = DEFAULT_TEMPLATE,
    answer: str | None = None,
) -> OraclePrompt:
    """Token ids for the oracle; with ``answer``, the answer and EOS follow (for training)."""
    if not isinstance(question, str) or not question.strip():
        raise OracleInputError("the question is empty")
    if n_positions < 1:
        raise OracleInputError("the oracle needs at least one activation vector")
    ids_before, ph, ids_after = _prompt_parts(
        tokenizer, question.strip(), layer, placeholder, template
    )
    ids = list(ids_before) + [ph] * n_positions + list(ids_after)
    positions = list(range(len(ids_before), len(ids_before) + n_positions))
    answer_start = None
    if answer is not None:
        if not answer.strip():
            raise OracleInputError("the answer is empty")
        answer_ids = answer_ids_of(tokenizer, answer)
        if tokenizer.eos_token_id is not None:
            answer_ids.append(tokenizer.eos_token_id)
        answer_start = len(ids)
        ids = ids + answer_ids
    return OraclePrompt(ids, positions, answer_start)
