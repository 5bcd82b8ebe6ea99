"""Classification as yes/no QA: from any labelled text dataset (text, label), ask
"Is this text about {label}?" of the true label (Yes) or another label (No), half each."""

from __future__ import annotations

import random

from datasets import Dataset

from oracle.errors import OracleInputError
from training.data import load_rows
from training.schema import make_row


def classification_qa(
    source: Dataset | str,
    n: int | None = None,
    text_column: str = "text",
    label_column: str = "label",
    label_names: list[str] | dict | None = None,
    question: str = "Is this text about {label}?",
    seed: int = 0,
) -> Dataset:
    """Yes/no rows over ``source`` (a ``Dataset`` or a path/hub id); read the whole text.

    Integer labels are named by ``label_names`` (or the dataset's ClassLabel names).
    """
    if isinstance(source, str):
        source = load_rows(source)
    for column in (text_column, label_column):
        if column not in source.column_names:
            raise OracleInputError(
                f"classification source lacks the column {column!r}; it has {source.column_names}"
            )
    if label_names is None:
        feature = source.features[label_column]
        label_names = list(getattr(feature, "names", []) or [])
    if isinstance(label_names, dict):
        label_names = [label_names[k] for k in sorted(label_names)]

    def name_of(label: object) -> str:
        if isinstance(label, int) and label_names:
            return str(label_names[label])
        return str(label)

    labels = sorted({name_of(x) for x in source[label_column]})
    if len(labels) < 2:
        raise OracleInputError("classification needs at least two distinct labels")
    rng = random.Random(seed)
    count = n if n is not None else len(source)
    rows = []
    for i in range(count):
        example = source[rng.randrange(len(source)) if n is not None else i]
        text, true = example[text_column], name_of(example[label_column])
        if not isinstance(text, str) or not text.strip():
            raise OracleInputError(f"classification source row {i}: empty {text_column!r}")
        asked = true if rng.random() < 0.5 else rng.choice([x for x in labels if x != true])
        answer = "Yes" if asked == true else "No"
        rows.append(
            make_row(question.format(label=asked), answer, prompt=text, source="classification")
        )
    return Dataset.from_list(rows)
