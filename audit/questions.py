"""Audit questions: from the command line or a file, and whether each is a yes/no question."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from oracle.errors import OracleInputError

# Questions starting with these words are yes/no questions unless said otherwise.
YES_NO_OPENERS = (
    "is", "are", "was", "were", "does", "do", "did", "has", "have", "had",
    "can", "could", "will", "would", "should", "may", "might", "must",
)  # fmt: skip


@dataclass(frozen=True)
class Question:
    """One audit question; ``yes_no`` questions also get P(yes) in the results."""

    text: str
    yes_no: bool


def looks_yes_no(text: str) -> bool:
    """True when ``text`` opens like a yes/no question ("Is ...", "Does ...")."""
    words = text.strip().split(maxsplit=1)
    return bool(words) and words[0].lower().strip(",:") in YES_NO_OPENERS


def make_questions(texts: list[str], yes_no: str = "auto") -> list[Question]:
    """Questions from ``texts``; ``yes_no`` is ``auto`` (by their first word), ``all`` or
    ``none``. Duplicates are dropped, keeping the first."""
    if yes_no not in ("auto", "all", "none"):
        raise OracleInputError(f"--yes-no must be auto, all or none, got {yes_no!r}")
    out: list[Question] = []
    for text in texts:
        if not isinstance(text, str) or not text.strip():
            raise OracleInputError("a question is empty")
        flag = {"all": True, "none": False}.get(yes_no, looks_yes_no(text))
        if all(q.text != text.strip() for q in out):
            out.append(Question(text.strip(), flag))
    return out


def load_questions(path: Path, yes_no: str = "auto") -> list[Question]:
    """Questions from a file: plain text (one per line) or JSONL/JSON with ``question`` and an
    optional ``yes_no`` per entry (which overrides ``yes_no``)."""
    path = Path(path)
    if not path.is_file():
        raise OracleInputError(f"questions file {str(path)!r} does not exist")
    text = path.read_text(encoding="utf-8")
    if path.suffix not in (".jsonl", ".json"):
        return make_questions([line for line in text.splitlines() if line.strip()], yes_no)
    try:
        entries = (
            json.loads(text)
            if path.suffix == ".json"
            else [json.loads(line) for line in text.splitlines() if line.strip()]
        )
    except json.JSONDecodeError as exc:
        raise OracleInputError(f"{path} is not valid JSON: {exc}") from None
    out: list[Question] = []
    for i, entry in enumerate(entries):
        if isinstance(entry, str):
            entry = {"question": entry}
        if not isinstance(entry, dict) or not isinstance(entry.get("question"), str):
            raise OracleInputError(f"{path} entry {i} needs a 'question' string")
        q = make_questions([entry["question"]], yes_no)[0]
        if "yes_no" in entry:
            q = Question(q.text, bool(entry["yes_no"]))
        if all(o.text != q.text for o in out):
            out.append(q)
    return out
