"""The black-box baselines: the target itself, reading the visible transcript as plain text.

- :func:`black_box`: what a user without this toolkit would do. The visible transcript (the
  non-system turns, or the text) goes to the target as one user message, followed by the
  question; its greedy reply is scored like any answer. For yes/no questions the reply is
  read leniently, and P(yes) (the target's next-token probabilities of its yes and no tokens,
  normalised over the two) decides when it says neither.
- :func:`continuation`: for "what comes next" items, the target continuing the text up to
  the read window's end (it sees the whole prefix, more than the oracle's window).

Both run the base model with the oracle adapter off, through the engine's
``user_turn_rows`` and ``continue_rows`` (engines without a transformers copy of the target
refuse them).
"""

from __future__ import annotations

from collections.abc import Sequence

from oracle.engines.base import Engine

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
    prompts = [
        black_box_prompt(text, question, conv)
        for text, question, conv in zip(visible, questions, is_conversation, strict=True)
    ]
    rows = engine.user_turn_rows(prompts)
    return engine.continue_rows(rows, max_new_tokens, batch_size, yes_no)


def continuation(
    engine: Engine, prefixes: Sequence[list[int]], n_tokens: Sequence[int], batch_size: int = 16
) -> list[str]:
    """The target's greedy next ``n_tokens[i]`` tokens after each token prefix (adapter off)."""
    out = [""] * len(prefixes)
    for k in sorted(set(n_tokens)):
        idx = [i for i, n in enumerate(n_tokens) if n == k]
        texts, _ = engine.continue_rows([prefixes[i] for i in idx], k, batch_size)
        for i, t in zip(idx, texts, strict=True):
            out[i] = t
    return out
