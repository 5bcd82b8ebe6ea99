"""Target inputs (a prompt or chat messages) tokenised with the character span of each message.

The spans let position selection pick a role's tokens ("user", "assistant", ...) or every token
outside the system prompt, for any chat template, including templates that fold the system
prompt into the first user turn (Gemma) and tokenizers with no template at all (GPT-2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from oracle.errors import OracleInputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

ROLES = ("system", "user", "assistant")


@dataclass
class TargetInput:
    """What the target reads: either ``prompt`` (plain text) or ``messages`` (chat turns)."""

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    add_generation_prompt: bool = False

    def __post_init__(self) -> None:
        if (self.prompt is None) == (self.messages is None):
            raise OracleInputError("give exactly one of a prompt or chat messages")
        if self.prompt is not None and not self.prompt.strip():
            raise OracleInputError("the prompt is empty")
        if self.messages is not None:
            if not isinstance(self.messages, list) or not self.messages:
                raise OracleInputError("messages must be a non-empty list of {role, content}")
            for i, message in enumerate(self.messages):
                if (
                    not isinstance(message, dict)
                    or "role" not in message
                    or "content" not in message
                ):
                    raise OracleInputError(f"message {i} needs a 'role' and a 'content'")
                if message["role"] not in ROLES:
                    raise OracleInputError(
                        f"message {i} has role {message['role']!r}; expected one of {ROLES}"
                    )
                if not isinstance(message["content"], str):
                    raise OracleInputError(f"message {i}: content must be a string")
            if not any(m["content"].strip() for m in self.messages):
                raise OracleInputError("every message is empty")

    @classmethod
    def coerce(cls, value: TargetInput | str | list[dict[str, str]]) -> TargetInput:
        if isinstance(value, TargetInput):
            return value
        if isinstance(value, str):
            return cls(prompt=value)
        return cls(messages=list(value))


@dataclass
class TokenizedInput:
    """Token ids of one target input, with per-token character offsets and message spans."""

    input_ids: list[int]
    offsets: list[tuple[int, int]]
    text: str
    # (role, char_start, char_end) of each message's content, in order; None for a plain prompt.
    spans: list[tuple[str, int, int]] | None = None
    # Why spans could not be located (the template rewrote the content), if so.
    span_error: str | None = None
    tokens: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.input_ids)


def has_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render(tokenizer: PreTrainedTokenizerBase, target: TargetInput) -> str:
    """The text the target reads: the prompt, or the messages through the chat template."""
    if target.prompt is not None:
        return target.prompt
    if not has_chat_template(tokenizer):
        raise OracleInputError(
            f"{type(tokenizer).__name__} has no chat template, so chat messages cannot be "
            "rendered; pass a plain prompt instead (role-based positions then do not apply)"
        )
    return tokenizer.apply_chat_template(
        target.messages, tokenize=False, add_generation_prompt=target.add_generation_prompt
    )


def _locate_spans(text: str, messages: list[dict[str, str]]) -> tuple[list, str | None]:
    spans: list[tuple[str, int, int]] = []
    cursor = 0
    for i, message in enumerate(messages):
        content = message["content"].strip()
        if not content:
            continue
        start = text.find(content, cursor)
        if start < 0:
            return (
                [],
                f"message {i} ({message['role']}) was not found verbatim in the rendered chat",
            )
        spans.append((message["role"], start, start + len(content)))
        cursor = start + len(content)
    return spans, None


def tokenize_input(tokenizer: PreTrainedTokenizerBase, target: TargetInput) -> TokenizedInput:
    """Render and tokenise ``target``; special tokens come from the chat template, not added."""
    text = render(tokenizer, target)
    add_special = target.prompt is not None
    encoded = tokenizer(text, add_special_tokens=add_special, return_offsets_mapping=True)
    ids = list(encoded["input_ids"])
    if not ids:
        raise OracleInputError("the input tokenises to no tokens")
    offsets = [tuple(o) for o in encoded["offset_mapping"]]
    spans, span_error = (None, None)
    if target.messages is not None:
        spans, span_error = _locate_spans(text, target.messages)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return TokenizedInput(ids, offsets, text, spans, span_error, tokens)
