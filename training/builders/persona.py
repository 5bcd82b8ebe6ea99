"""System-prompt QA (LatentQA style): the persona sits in a hidden system prompt; the oracle
reads only the tokens after it and answers questions about the persona.

Banks are JSONL files. Personas: ``{"name", "system", "description"}``; questions:
``{"question", "answer"}`` where ``answer`` may use ``{name}`` and ``{description}``, or
``{"question", "kind": "yes_no"}`` where the question uses ``{name}`` and is asked about the
true persona (answer Yes) and a random other one (answer No). User turns: ``{"user"}``.
Defaults are the small banks in ``training/banks/``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from datasets import Dataset

from oracle.errors import OracleInputError
from training.schema import make_row

BANKS = Path(__file__).resolve().parent.parent / "banks"


def read_jsonl(path: str | Path, required: tuple[str, ...]) -> list[dict]:
    """Rows of a JSONL bank; each must hold the ``required`` keys."""
    path = Path(path)
    if not path.is_file():
        raise OracleInputError(f"bank file {str(path)!r} does not exist")
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise OracleInputError(f"{path.name} line {i + 1}: invalid JSON ({exc})") from None
        missing = [k for k in required if not row.get(k)]
        if missing:
            raise OracleInputError(f"{path.name} line {i + 1}: missing {missing}")
        rows.append(row)
    if not rows:
        raise OracleInputError(f"bank file {str(path)!r} is empty")
    return rows


def persona_qa(
    n: int = 1000,
    personas: str | Path = BANKS / "personas.jsonl",
    questions: str | Path = BANKS / "questions.jsonl",
    users: str | Path = BANKS / "users.jsonl",
    seed: int = 0,
) -> Dataset:
    """``n`` rows: messages [system persona, user turn], control "system", persona questions."""
    persona_rows = read_jsonl(personas, ("name", "system", "description"))
    question_rows = read_jsonl(questions, ("question",))
    user_rows = read_jsonl(users, ("user",))
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        persona = rng.choice(persona_rows)
        q = rng.choice(question_rows)
        messages = [
            {"role": "system", "content": persona["system"]},
            {"role": "user", "content": rng.choice(user_rows)["user"]},
        ]
        if q.get("kind") == "yes_no":
            asked = persona
            if len(persona_rows) > 1 and rng.random() < 0.5:
                asked = rng.choice([p for p in persona_rows if p is not persona])
            question = q["question"].format(**asked)
            answer = "Yes" if asked is persona else "No"
        else:
            question = q["question"].format(**persona)
            answer = q.get("answer", "{description}").format(**persona)
        rows.append(
            make_row(question, answer, messages=messages, control="system", source="persona_qa")
        )
    return Dataset.from_list(rows)
