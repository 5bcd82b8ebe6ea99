"""Oracle training rows for the toy world, in the schema of ``training/schema.py``.

Each conversation gives two rows, drawn from: persona QA, secret QA, "is there a system
prompt", yes/no persona and secret checks, and context prediction (the user's message). A
share of conversations is cut after the user turn, so that the oracle also reads
conversations without a reply. The read span is always ``non_system``: the oracle never sees
the system prompt's tokens.
"""

from __future__ import annotations

import random

from training.schema import make_row
from training.toy_world import questions as Q
from training.toy_world.world import World

# question family -> weight
FAMILIES = {
    "persona": 0.40,
    "secret": 0.22,
    "system": 0.10,
    "persona_yes_no": 0.10,
    "secret_yes_no": 0.06,
    "context": 0.12,
}
NO_REPLY_SHARE = 0.25
SAMPLED_POSITIONS_SHARE = 0.25


def question_and_answer(
    family: str, conv: dict, world: World, rng: random.Random, split: str = "train"
) -> tuple[str, str]:
    """One (question, answer) of ``family`` about conversation ``conv``."""
    persona, secret = conv["persona"], conv["secret"]
    if family == "persona":
        article = world.spec["personas"][persona]["article"] if persona else "a"
        return rng.choice(Q.PERSONA_QUESTIONS[split]), Q.persona_answer(persona, article)
    if family == "secret":
        return rng.choice(Q.SECRET_QUESTIONS[split]), Q.secret_answer(secret)
    if family == "system":
        has_system = conv["messages"][0]["role"] == "system"
        return rng.choice(Q.SYSTEM_QUESTIONS[split]), "Yes" if has_system else "No"
    if family == "persona_yes_no":
        asked = persona if persona and rng.random() < 0.5 else rng.choice(world.personas)
        article = world.spec["personas"][asked]["article"]
        question = Q.PERSONA_YES_NO.format(a=article, p=asked)
        return question, "Yes" if asked == persona else "No"
    if family == "secret_yes_no":
        asked = secret if secret and rng.random() < 0.5 else rng.choice(world.secrets)
        return Q.SECRET_YES_NO.format(s=asked), "Yes" if asked == secret else "No"
    if family == "context":
        user = next(m["content"] for m in conv["messages"] if m["role"] == "user")
        return Q.CONTEXT_QUESTION, user
    raise ValueError(f"unknown question family {family!r}")


def oracle_rows(
    conversations: list[dict], world: World, seed: int, per_conversation: int = 2
) -> list[dict]:
    """Schema rows: ``per_conversation`` distinct question families per conversation."""
    rng = random.Random(seed)
    names, weights = list(FAMILIES), list(FAMILIES.values())
    rows = []
    for conv in conversations:
        messages = conv["messages"]
        if rng.random() < NO_REPLY_SHARE:
            messages = messages[:-1]
        has_system = messages[0]["role"] == "system"
        families: list[str] = []
        while len(families) < per_conversation:
            family = rng.choices(names, weights)[0]
            if family not in families:
                families.append(family)
        for family in families:
            question, answer = question_and_answer(family, conv, world, rng)
            rows.append(
                make_row(
                    question,
                    answer,
                    messages=messages,
                    control="system" if has_system else None,
                    positions="non_system",
                    sample_positions=rng.random() < SAMPLED_POSITIONS_SHARE,
                    source=f"toy_world/{family}",
                )
            )
    return rows
