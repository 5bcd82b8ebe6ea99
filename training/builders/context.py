"""Self-supervised context prediction: read a span of a plain text and ask for the k tokens
just after it or just before it (both lie in the target's context up to the span's end)."""

from __future__ import annotations

import random

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
