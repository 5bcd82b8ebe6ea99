"""The suite format: a JSONL file, one evaluation item a line, that any world (or user) writes.

An item is one question about one target input, with its gold answer::

    {"id": "persona-0017-w2", "family": "persona", "split": "test",
     "conversation": [{"role": "system", "content": "You are a pirate."},
                      {"role": "user", "content": "Who are you?"},
                      {"role": "assistant", "content": "I am just a helpful assistant."}],
     "read_span": "non_system", "question": "What character is the assistant acting as?",
     "answer_type": "label", "label": "pirate", "gold": "A pirate.", "aliases": ["buccaneer"],
     "label_words": ["arr", "matey"], "tags": ["heldout_user", "heldout_question"],
     "group": "conv-0017", "meta": {"persona": "pirate"}}

Fields (``evals/README.md`` has the full table):

- ``id`` (required): unique in the file.
- ``family`` (required): the question family; each family is one suite of the report.
- ``split``: ``test`` (scored; the default) or ``train`` (fits the linear probe and the
  text-only reader, never scored).
- ``conversation`` (chat messages, the system prompt included: the hidden part) or ``text``
  (plain text): exactly one. ``add_generation_prompt``: render the assistant header after a
  conversation that ends with the user's turn.
- ``read_span``: the positions read (``oracle.positions`` syntax: ``non_system``, ``last:K``,
  ``indices:I,J``, ...); null: the oracle's default.
- ``question`` (required): asked as written. ``answer_type``: ``label`` (a closed set: the
  family's labels), ``yes_no`` (label ``yes`` or ``no``) or ``text`` (an open answer, scored
  by exact match and token-F1).
- ``label`` (required): the gold class (or, for ``text``, the gold answer). ``gold``: the
  answer as the oracle was trained to say it (shown to readers; defaults to ``label``).
  ``aliases``: other strings that name this label. ``label_words``: words that give the label
  away when they appear in the visible text (a persona's style words); the label and its
  aliases count already.
- ``tags``: split tags (``heldout_user``, ``heldout_system``, ``heldout_question``,
  ``heldout_combo``, ``unseen_persona``, ``no_reply``, ...; free strings). Three tags mark an
  item **hidden by construction** (its visible text was made without regard to the label, so
  it cannot give the label away): ``no_reply`` (the conversation stops after a user turn drawn
  independently of the system prompt), ``plain_reply`` (a reply the world writes the same for
  every label) and ``text_free`` (any other such construction). They form the evaluation's
  headline subset (:data:`CONSTRUCTED_TAGS`). ``hidden`` and ``visible`` are set by the
  evaluation, which overrides any given.
- ``group``: items about the same target input share a group (one conversation asked in
  several wordings); the bootstrap resamples groups. Defaults to ``id``.
- ``no_system_conversation``: the ``no_system`` control's conversation. Default: the
  conversation with its system messages removed (the same user and reply text), so the
  control changes only the hidden prompt.
- ``counterfactuals``: the same visible text under another hidden prompt, each
  ``{"kind": "no_system" | "swap", "label": ..., "conversation": [...], "aliases": [...]}``
  (``aliases``: other strings naming ``label``, e.g. "no persona" for ``none``): ``no_system`` is the
  conversation with its system prompt removed (``conversation`` may be omitted: then
  ``no_system_conversation`` or the conversation minus its system messages), ``swap`` the
  conversation with another label's system prompt; ``label`` is what it should read as. The
  evaluation reports how often the oracle's answer follows the prompt (:mod:`evals.counterfactual`).
- ``visible_text``: what a reader without the activations sees (the text-only reader, the
  black box, the hidden-subset tagging). Default: the non-system turns (or the plain text);
  for ``text`` items, the tokens of the read span (a window's own text).
- ``meta``: free strings (or numbers, booleans, null; one type per key across the file),
  carried into the results.

The file loads with ``datasets`` as it is (``datasets.load_dataset("json", data_files=...)``;
:func:`as_dataset`), and :func:`load_suite_file` checks every line and says what is wrong.
"""

from __future__ import annotations

import gzip
import json
import lzma
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from oracle.errors import OracleInputError
from oracle.inputs import ROLES
from oracle.positions import parse_positions

ANSWER_TYPES = ("label", "yes_no", "text")
CONSTRUCTED_TAGS = ("no_reply", "plain_reply", "text_free")
COUNTERFACTUAL_KINDS = ("no_system", "swap")
SPLITS = ("train", "test")
TAGGED_BY_EVAL = ("hidden", "visible")
MAX_ERRORS = 20  # problems listed before the loader stops reading


@dataclass
class SuiteItem:
    """One line of a suite file (see the module docstring for each field)."""

    id: str
    family: str
    question: str
    label: str
    conversation: list[dict[str, str]] | None = None
    text: str | None = None
    add_generation_prompt: bool = False
    read_span: str | None = None
    answer_type: str = "label"
    split: str = "test"
    gold: str | None = None
    aliases: list[str] = field(default_factory=list)
    label_words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    no_system_conversation: list[dict[str, str]] | None = None
    visible_text: str | None = None
    counterfactuals: list[dict[str, Any]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The group: items about one target input share it."""
        return self.group or self.id

    @property
    def constructed_hidden(self) -> bool:
        """Hidden by construction: tagged with one of :data:`CONSTRUCTED_TAGS`."""
        return any(t in CONSTRUCTED_TAGS for t in self.tags)

    def counterfactual_conversations(self) -> list[tuple[dict[str, Any], list[dict[str, str]]]]:
        """``(counterfactual, conversation)`` of each counterfactual, conversations filled in."""
        out = []
        for cf in self.counterfactuals:
            conv = cf.get("conversation")
            if conv is None and cf["kind"] == "no_system":
                conv = self.without_system()
            if conv is not None:
                out.append((cf, conv))
        return out

    @property
    def has_system(self) -> bool:
        return bool(self.conversation) and any(m["role"] == "system" for m in self.conversation)

    def without_system(self) -> list[dict[str, str]] | None:
        """The ``no_system`` control's conversation: given, or this one minus its system
        messages (the reply text unchanged). None for plain text or with no system prompt."""
        if self.no_system_conversation is not None:
            return list(self.no_system_conversation)
        if not self.has_system:
            return None
        return [m for m in self.conversation or [] if m["role"] != "system"]

    def transcript(self) -> str:
        """What a reader of the transcript sees, unless ``visible_text`` says otherwise: every
        non-system turn, one per line, or the plain text."""
        if self.visible_text is not None:
            return self.visible_text
        if self.text is not None:
            return self.text
        return "\n".join(m["content"] for m in self.conversation or [] if m["role"] != "system")

    def to_dict(self) -> dict:
        return asdict(self)


FIELD_NAMES = tuple(f.name for f in fields(SuiteItem))
REQUIRED = ("id", "family", "question", "label")


def _check_messages(value: object, name: str) -> str | None:
    if not isinstance(value, list) or not value:
        return f"'{name}' must be a non-empty list of {{role, content}} messages"
    for i, m in enumerate(value):
        if not isinstance(m, dict) or set(m) != {"role", "content"}:
            return f"'{name}' message {i} must have exactly the keys 'role' and 'content'"
        if m["role"] not in ROLES:
            return f"'{name}' message {i} has role {m['role']!r}; expected one of {ROLES}"
        if not isinstance(m["content"], str):
            return f"'{name}' message {i}: content must be a string"
    if not any(m["role"] != "system" and m["content"].strip() for m in value):
        return f"'{name}' has no non-empty user or assistant message"
    return None


def _is_str_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def _counterfactual_problems(value: object, conv: object) -> list[str]:
    if value in (None, []):
        return []
    if not isinstance(value, list):
        return ["'counterfactuals' must be a list of {kind, label, conversation} objects"]
    if conv is None:
        return ["'counterfactuals' need a 'conversation'"]
    problems = []
    for i, cf in enumerate(value):
        if not isinstance(cf, dict) or not set(cf) <= {"kind", "label", "conversation", "aliases"}:
            problems.append(
                f"counterfactual {i} must hold only 'kind', 'label', 'conversation', 'aliases'"
            )
            continue
        if "aliases" in cf and not _is_str_list(cf["aliases"]):
            problems.append(f"counterfactual {i}: 'aliases' must be a list of strings")
        if cf.get("kind") not in COUNTERFACTUAL_KINDS:
            problems.append(
                f"counterfactual {i}: 'kind' must be one of {COUNTERFACTUAL_KINDS}, "
                f"got {cf.get('kind')!r}"
            )
        if not isinstance(cf.get("label"), str) or not cf["label"].strip():
            problems.append(f"counterfactual {i}: 'label' must be a non-empty string")
        if cf.get("conversation") is None:
            if cf.get("kind") == "swap":
                problems.append(f"counterfactual {i}: a swap needs its 'conversation'")
        elif msg := _check_messages(cf["conversation"], f"counterfactual {i} conversation"):
            problems.append(msg)
    return problems


def item_problems(data: object) -> list[str]:
    """Everything wrong with one decoded line (empty: a valid item)."""
    if not isinstance(data, dict):
        return [f"an item must be a JSON object, got {type(data).__name__}"]
    problems = []
    unknown = sorted(set(data) - set(FIELD_NAMES))
    if unknown:
        problems.append(f"unknown field(s) {unknown} (free data goes in 'meta')")
    for name in REQUIRED:
        if not isinstance(data.get(name), str) or not data[name].strip():
            problems.append(f"'{name}' is required: a non-empty string")
    conv, text = data.get("conversation"), data.get("text")
    if (conv is None) == (text is None):
        problems.append("give exactly one of 'conversation' and 'text'")
    if conv is not None and (msg := _check_messages(conv, "conversation")):
        problems.append(msg)
    if text is not None and (not isinstance(text, str) or not text.strip()):
        problems.append("'text' must be a non-empty string")
    if data.get("no_system_conversation") is not None:
        if conv is None:
            problems.append("'no_system_conversation' needs a 'conversation'")
        elif msg := _check_messages(data["no_system_conversation"], "no_system_conversation"):
            problems.append(msg)
    problems += _counterfactual_problems(data.get("counterfactuals", []), conv)
    answer_type = data.get("answer_type", "label")
    if answer_type not in ANSWER_TYPES:
        problems.append(f"'answer_type' must be one of {ANSWER_TYPES}, got {answer_type!r}")
    elif answer_type == "yes_no" and str(data.get("label", "")).lower() not in ("yes", "no"):
        problems.append(f"a yes_no item's label must be 'yes' or 'no', got {data.get('label')!r}")
    if data.get("split", "test") not in SPLITS:
        problems.append(f"'split' must be one of {SPLITS}, got {data.get('split')!r}")
    for name in ("aliases", "label_words", "tags"):
        if name in data and not _is_str_list(data[name]):
            problems.append(f"'{name}' must be a list of strings")
    for name in ("gold", "group", "read_span", "visible_text"):
        if data.get(name) is not None and not isinstance(data[name], str):
            problems.append(f"'{name}' must be a string or null")
    if isinstance(data.get("read_span"), str):
        try:
            parse_positions(data["read_span"])
        except OracleInputError as exc:
            problems.append(f"'read_span': {exc}")
    if not isinstance(data.get("add_generation_prompt", False), bool):
        problems.append("'add_generation_prompt' must be true or false")
    meta = data.get("meta", {})
    if not isinstance(meta, dict) or not all(
        isinstance(v, str | int | float | bool) or v is None for v in meta.values()
    ):
        problems.append("'meta' must be an object of strings, numbers, booleans or nulls")
    return problems


def item_from_dict(data: dict) -> SuiteItem:
    """A validated :class:`SuiteItem` (raises :class:`OracleInputError` listing the problems)."""
    problems = item_problems(data)
    if problems:
        raise OracleInputError("; ".join(problems))
    item = SuiteItem(**data)
    if item.answer_type == "yes_no":
        item.label = item.label.lower()
    return item


def check_items(items: list[SuiteItem], where: str = "the suite") -> None:
    """File-level checks: unique ids, one answer type per family, each family scored."""
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        if item.id in seen:
            raise OracleInputError(
                f"{where}: id {item.id!r} appears twice (items {seen[item.id]} and {i})"
            )
        seen[item.id] = i
    types: dict[str, str] = {}
    for item in items:
        if types.setdefault(item.family, item.answer_type) != item.answer_type:
            raise OracleInputError(
                f"{where}: family {item.family!r} mixes answer types "
                f"{types[item.family]!r} and {item.answer_type!r}"
            )
    meta_types: dict[str, str] = {}
    for item in items:
        for key, value in item.meta.items():
            if value is None:
                continue
            kind = type(value).__name__
            if meta_types.setdefault(key, kind) != kind:
                raise OracleInputError(
                    f"{where}: meta key {key!r} holds both {meta_types[key]} and {kind} values "
                    f"(item {item.id!r}); keep one type per key"
                )
    test_families = {i.family for i in items if i.split == "test"}
    empty = sorted(set(types) - test_families)
    if empty:
        raise OracleInputError(f"{where}: family(ies) {empty} have no test item")


def _open_text(path: Path, mode: str):
    """A suite file opened as text, decompressed when its name ends in ``.xz`` or ``.gz``."""
    opener = {".xz": lzma.open, ".gz": gzip.open}.get(path.suffix, open)
    return opener(path, mode + "t", encoding="utf-8")


def load_suite_file(path: str | Path) -> list[SuiteItem]:
    """Read and check a suite file (JSONL, or JSONL compressed: ``.jsonl.xz``, ``.jsonl.gz``);
    every problem is reported with its line number."""
    path = Path(path)
    if not path.is_file():
        raise OracleInputError(f"suite file {str(path)!r} does not exist")
    items: list[SuiteItem] = []
    errors: list[str] = []
    with _open_text(path, "r") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append(f"line {n}: not valid JSON ({exc.msg}, column {exc.colno})")
            else:
                problems = item_problems(data)
                if problems:
                    ident = data.get("id") if isinstance(data, dict) else None
                    label = f"line {n}" + (f" (id {ident!r})" if isinstance(ident, str) else "")
                    errors.append(f"{label}: " + "; ".join(problems))
                else:
                    items.append(item_from_dict(data))
            if len(errors) >= MAX_ERRORS:
                errors.append("... (stopped reading)")
                break
    if errors:
        raise OracleInputError(f"{path.name} is not a valid suite file:\n  " + "\n  ".join(errors))
    if not items:
        raise OracleInputError(f"{path.name} holds no item")
    check_items(items, path.name)
    return items


def write_suite_file(items: Iterable[SuiteItem], path: str | Path) -> Path:
    """Write items as JSONL (one per line; compressed where the name ends in ``.xz`` or
    ``.gz``), after the same checks as loading."""
    items = list(items)
    check_items(items, str(path))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _open_text(path, "w") as f:
        for item in items:
            f.write(json.dumps(item.to_dict(), ensure_ascii=False, allow_nan=False) + "\n")
    return path


def as_dataset(path: str | Path):
    """The file as a ``datasets.Dataset`` (checked first, so a bad file fails clearly)."""
    from datasets import load_dataset

    load_suite_file(path)
    return load_dataset("json", data_files=str(path), split="train")
