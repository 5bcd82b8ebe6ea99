"""Score free-text answers against a closed label set."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence


def _pattern(alias: str) -> re.Pattern[str]:
    return re.compile(r"(?<![a-z0-9])" + re.escape(alias.lower().strip()) + r"(?![a-z0-9])")


def label_of(
    text: str, labels: Sequence[str], aliases: Mapping[str, Sequence[str]] | None = None
) -> str | None:
    """The label an answer names: the one whose name (or alias) appears first in ``text``.

    Matching is case-insensitive on whole words; when two labels match at the same place the
    longer match wins ("sea captain" over "captain"). None when no label is named.

    >>> label_of("Arr, a pirate!", ["pirate", "chef"])
    'pirate'
    """
    lowered = text.lower()
    best: tuple[int, int, str] | None = None
    for label in labels:
        for alias in [label, *(aliases or {}).get(label, ())]:
            if not alias.strip():
                continue
            m = _pattern(alias).search(lowered)
            if m is None:
                continue
            key = (m.start(), -(m.end() - m.start()), label)
            if best is None or key < best:
                best = key
    return None if best is None else best[2]


def chance_rates(labels_of_items: Sequence[str], n_labels: int) -> tuple[float, float]:
    """(uniform chance 1/n_labels, majority-class rate) of a test set's true labels."""
    if not labels_of_items:
        return 1.0 / max(n_labels, 1), 0.0
    counts: dict[str, int] = {}
    for label in labels_of_items:
        counts[label] = counts.get(label, 0) + 1
    return 1.0 / max(n_labels, 1), max(counts.values()) / len(labels_of_items)
