"""Self-supervised context prediction (Activation Oracles): read a window of activations and
ask for the k tokens just after it or just before it.

- :func:`context_prediction`: plain texts; the window is the end of a text prefix.
- :func:`context_items` + :func:`context_rows`: chat conversations of any world; the window
  and its answer lie inside one message of a role (the user's, by default), so that a hidden
  system prompt is never read.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from oracle.errors import OracleInputError
from training.schema import make_row

NEXT = "What are the next {k} tokens?"
PREVIOUS = "What are the {k} tokens before this?"


def _texts(source: Dataset | str | list[str], text_column: str) -> list[str]:
    if isinstance(source, list):
        return source
    if isinstance(source, str) and source.endswith(".txt"):
        from pathlib import Path

        return [p for p in Path(source).read_text().split("\n\n") if p.strip()]
    if isinstance(source, str):
        from training.data import load_rows

        source = load_rows(source)
    if text_column not in source.column_names:
        raise OracleInputError(f"context source lacks the column {text_column!r}")
    return [t for t in source[text_column] if isinstance(t, str) and t.strip()]


def context_prediction(
    source: Dataset | str | list[str],
    tokenizer: PreTrainedTokenizerBase | str,
    n: int = 1000,
    k: int = 4,
    max_span: int = 8,
    text_column: str = "text",
    seed: int = 0,
) -> Dataset:
    """``n`` rows: the target reads a text prefix; the read span is its last 1..max_span
    tokens (``last:L``, exact); the answer is the k tokens after (or before) the span.

    ``source``: a list of texts, a ``.txt`` file (paragraphs), or a dataset/path with
    ``text_column``. ``tokenizer``: the target's (object or name/path).
    """
    if isinstance(tokenizer, str):
        from oracle.models import load_tokenizer

        tokenizer = load_tokenizer(tokenizer)
    texts = _texts(source, text_column)
    rng = random.Random(seed)
    encoded = []
    for text in texts:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        if len(enc["input_ids"]) >= 2 * k + 2:
            encoded.append((text, enc["offset_mapping"]))
    if not encoded:
        raise OracleInputError(f"no text in the context source has at least {2 * k + 2} tokens")
    rows = []
    for _ in range(n):
        text, offsets = rng.choice(encoded)
        n_tok = len(offsets)
        direction = rng.choice(["next", "previous"])
        span = rng.randint(1, max_span)
        if direction == "next":
            end = rng.randint(span, n_tok - k)  # read tokens [end - span, end)
            answer = text[offsets[end][0] : offsets[end + k - 1][1]]
        else:
            end = rng.randint(k + span, n_tok)
            start = end - span
            answer = text[offsets[start - k][0] : offsets[start - 1][1]]
        prompt = text[: offsets[end - 1][1]]
        if not answer.strip() or not prompt.strip():
            continue
        rows.append(
            make_row(
                (NEXT if direction == "next" else PREVIOUS).format(k=k),
                answer.strip(),
                prompt=prompt,
                positions=f"last:{span}",
                sample_positions=False,
                source="context_prediction",
            )
        )
    return Dataset.from_list(rows)


# ---------------------------------------------------------------------- chat windows
@dataclass(frozen=True)
class ContextItem:
    """One context-prediction item in a chat: read ``window`` (token indices of the rendered
    chat), answer the ``k`` tokens just before it (``previous``) or just after it (``next``)."""

    messages: list[dict[str, str]]
    window: list[int]
    direction: str
    k: int
    answer: str
    answer_ids: tuple[int, ...] = ()
    add_generation_prompt: bool = False


def context_items(
    conversations: list[list[dict[str, str]]],
    tokenizer: PreTrainedTokenizerBase,
    n: int,
    k: Sequence[int] = (1, 2, 3),
    max_span: int = 4,
    role: str = "user",
    directions: Sequence[str] = ("previous", "next"),
    seed: int = 0,
) -> list[ContextItem]:
    """``n`` items drawn from chat ``conversations`` (Activation Oracles' context prediction).

    Each item reads a window of 1..``max_span`` consecutive tokens inside one message of
    ``role`` (rendered with the tokenizer's chat template), and its answer is the ``k`` tokens
    (drawn from ``k``) just before or just after the window, inside the same message, so that
    neither the window nor the answer touches another message (e.g. a hidden system prompt).
    Messages too short for a draw are skipped; draws are seeded.
    """
    from oracle.inputs import TargetInput, tokenize_input

    if not conversations:
        raise OracleInputError("context_items needs at least one conversation")
    unknown = sorted(set(directions) - {"previous", "next"})
    if unknown or not directions:
        raise OracleInputError(f"directions must be 'previous' and/or 'next', got {directions}")
    if max_span < 1 or not k or min(k) < 1:
        raise OracleInputError("max_span and every k must be >= 1")
    rng = random.Random(seed)
    tokenized: dict[int, tuple] = {}
    items: list[ContextItem] = []
    attempts = 0
    while len(items) < n:
        attempts += 1
        if attempts > 20 * n + 100:
            raise OracleInputError(
                f"the {role} messages are too short for windows of 1 token and k={min(k)}"
            )
        index = rng.randrange(len(conversations))
        if index not in tokenized:
            tok = tokenize_input(tokenizer, TargetInput(messages=conversations[index]))
            tokenized[index] = (tok, _message_tokens(tok, role))
        tok, spans = tokenized[index]
        if not spans:
            continue
        inside = spans[rng.randrange(len(spans))]
        direction, kk = rng.choice(list(directions)), rng.choice(list(k))
        width = rng.randint(1, max_span)
        if len(inside) < width + kk:
            continue
        if direction == "previous":
            start = rng.randint(kk, len(inside) - width)
            answer_idx = inside[start - kk : start]
        else:
            start = rng.randint(0, len(inside) - width - kk)
            answer_idx = inside[start + width : start + width + kk]
        window = inside[start : start + width]
        answer = tok.text[tok.offsets[answer_idx[0]][0] : tok.offsets[answer_idx[-1]][1]].strip()
        if not answer:
            continue
        ids = tuple(tok.input_ids[i] for i in answer_idx)
        items.append(ContextItem(conversations[index], window, direction, kk, answer, ids))
    return items


def _message_tokens(tok, role: str) -> list[list[int]]:
    """Token indices wholly inside each message of ``role`` (one list per message)."""
    out = []
    for r, start, end in tok.spans or []:
        if r == role:
            idx = [i for i, (s, e) in enumerate(tok.offsets) if s >= start and e <= end and e > s]
            if idx:
                out.append(idx)
    return out


def context_rows(
    items: list[ContextItem],
    questions: dict[str, Sequence[str]] | None = None,
    seed: int = 0,
    source: str = "context_prediction",
) -> list[dict]:
    """Schema rows of ``items``: read exactly the window (``indices:...``), question drawn from
    ``questions[direction]`` (wordings with ``{k}``; default the builder's own), answer the
    tokens. A conversation with a system message hides it (``control: system``)."""
    questions = questions or {"previous": [PREVIOUS], "next": [NEXT]}
    rng = random.Random(seed)
    rows = []
    for item in items:
        has_system = any(m["role"] == "system" for m in item.messages)
        rows.append(
            make_row(
                rng.choice(list(questions[item.direction])).format(k=item.k),
                item.answer,
                messages=item.messages,
                control="system" if has_system else None,
                positions="indices:" + ",".join(map(str, item.window)),
                sample_positions=False,
                add_generation_prompt=item.add_generation_prompt or None,
                source=f"{source}/{item.direction}",
            )
        )
    return rows
