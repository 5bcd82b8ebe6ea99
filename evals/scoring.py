"""The one scoring function: every method's answer to an item is scored by :func:`score_answer`.

- ``label`` items: the answer names a label (its name or an alias, as a whole word; the first
  named wins); correct when that label is the gold one.
- ``yes_no`` items: parsed leniently ("Yes.", "yeah", "No, there is not", "true", ...); when
  the answer says neither, P(yes) decides if the method gave one (>= 0.5: yes).
- ``text`` items (open answers: context prediction): exact match of the normalised token lists
  (lower-cased words and punctuation marks) and SQuAD-style token-F1.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


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


_YES = ("yes", "yeah", "yep", "yup", "true", "correct", "affirmative", "indeed", "certainly")
_NO = ("no", "nope", "nah", "false", "incorrect", "not", "none", "never", "negative")
_WORD = re.compile(r"[a-z]+")


def yes_no_of(text: str, p_yes: float | None = None) -> str | None:
    """``"yes"``, ``"no"`` or None, read leniently: the first yes- or no-word of the answer
    ("Yes, there is." -> yes; "There is not." -> no); with neither, P(yes) >= 0.5 -> yes."""
    for word in _WORD.findall(text.lower()):
        if word in _YES:
            return "yes"
        if word in _NO:
            return "no"
    if p_yes is not None:
        return "yes" if p_yes >= 0.5 else "no"
    return None


def answer_tokens(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: what exact match and token-F1 compare."""
    return re.findall(r"\w+|[^\w\s]", text.lower())


def token_f1(answer: str, gold: str) -> float:
    """SQuAD-style token-F1 of two answers' :func:`answer_tokens` (1.0 when both are empty)."""
    a, g = answer_tokens(answer), answer_tokens(gold)
    if not a or not g:
        return float(a == g)
    common = sum((Counter(a) & Counter(g)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(a), common / len(g)
    return 2 * precision * recall / (precision + recall)


@dataclass(frozen=True)
class Score:
    """How one answer scores: ``correct`` (0 or 1: the gold label named, or an exact match),
    ``f1`` (token-F1 for text items; equal to ``correct`` otherwise) and ``predicted`` (the
    label named, ``yes``/``no``, or the normalised answer text; None: nothing recognisable)."""

    correct: float
    f1: float
    predicted: str | None


def score_answer(
    answer: str,
    label: str,
    answer_type: str = "label",
    labels: Sequence[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
    p_yes: float | None = None,
) -> Score:
    """Score ``answer`` against the gold ``label`` of an item of ``answer_type``.

    ``labels`` and ``aliases`` are the family's closed label set and its accepted aliases
    (``label`` items); ``p_yes`` decides a ``yes_no`` answer that says neither.

    >>> score_answer("A pirate.", "pirate", "label", ["pirate", "chef"]).correct
    1.0
    >>> score_answer("the red cat", "the cat", "text").f1
    0.8
    """
    if answer_type == "text":
        exact = float(answer_tokens(answer) == answer_tokens(label))
        predicted = " ".join(answer_tokens(answer)) or None
        return Score(exact, token_f1(answer, label), predicted)
    if answer_type == "yes_no":
        predicted = yes_no_of(answer, p_yes)
        correct = float(predicted == label.lower())
        return Score(correct, correct, predicted)
    if answer_type != "label":
        raise ValueError(f"unknown answer type {answer_type!r}")
    predicted = label_of(answer, labels or [label], aliases)
    correct = float(predicted == label)
    return Score(correct, correct, predicted)


def normalised(text: str) -> str:
    """An answer as the answer distribution counts it (lower-cased tokens, space-joined)."""
    return " ".join(answer_tokens(text))


def chance_rates(labels_of_items: Sequence[str], n_labels: int) -> tuple[float, float]:
    """(uniform chance 1/n_labels, majority-class rate) of a test set's true labels."""
    if not labels_of_items:
        return 1.0 / max(n_labels, 1), 0.0
    counts = Counter(labels_of_items)
    return 1.0 / max(n_labels, 1), max(counts.values()) / len(labels_of_items)
