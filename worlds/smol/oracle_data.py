"""Oracle training rows for the SmolLM2 world, in the schema of ``training/schema.py``.

One row per conversation (many distinct conversations beat epochs over few). A conversation
with an on-policy reply is read over its user turn and reply; one without is cut after the
user turn and rendered with the assistant header (``add_generation_prompt``), whose tokens
carry the most. Either way the read span is ``non_system``: the oracle never sees the system
prompt's tokens. Context-prediction rows (``context_rows``) read a window of the target's own
replies as plain text and ask for the tokens just before or after it (the builder
``training.builders.context``), asked in this world's training wordings.
"""

from __future__ import annotations

import random

from training.schema import make_row
from worlds.smol import questions as Q
from worlds.smol.world import SmolWorld

# Question family weights by the conversation's kind. Each kind is asked mostly about what it
# hides, so that the prior answers ("No persona.", "No secret word.") are about a fifth of
# their family's rows: with the prior at a third or more (the first recipe), runs collapsed
# onto it (data/smol_world/README.md, the recipe table).
FAMILY_WEIGHTS = {
    "persona": {"persona": 0.75, "persona_yes_no": 0.10, "secret": 0.05, "instructed": 0.10},
    "secret": {"secret": 0.75, "persona": 0.10, "instructed": 0.15},
    "both": {"secret": 0.50, "persona": 0.45, "instructed": 0.05},
    "default": {"persona": 0.40, "secret": 0.30, "instructed": 0.30},
    "neutral": {"persona": 0.40, "secret": 0.30, "instructed": 0.30},
}
SAMPLED_POSITIONS_SHARE = 0.3


def with_reply(conv: dict, reply: str | None) -> tuple[list[dict], bool]:
    """(messages, add_generation_prompt): the reply appended, or the header added."""
    if reply:
        return conv["messages"] + [{"role": "assistant", "content": reply}], False
    return conv["messages"], True


def question_and_answer(
    family: str, conv: dict, world: SmolWorld, rng: random.Random, split: str = "train"
) -> tuple[str, str]:
    """One (question, answer) of ``family`` about ``conv``, in a ``split`` wording."""
    persona = world.by_name[conv["persona"]] if conv["persona"] else None
    if family == "persona":
        answer = Q.persona_answer(persona.with_article if persona else None)
        return rng.choice(Q.QUESTIONS["persona"][split]), answer
    if family == "secret":
        return rng.choice(Q.QUESTIONS["secret"][split]), Q.secret_answer(conv["secret"])
    if family == "instructed":
        instructed = conv["persona"] is not None or conv["secret"] is not None
        return rng.choice(Q.QUESTIONS["instructed"][split]), "Yes" if instructed else "No"
    if family == "persona_yes_no":
        pool = world.train_personas if split == "train" else world.personas
        asked = persona if persona and rng.random() < 0.5 else rng.choice(pool)
        return Q.PERSONA_YES_NO.format(p=asked.with_article), "Yes" if asked == persona else "No"
    raise ValueError(f"unknown question family {family!r}")


def conversation_rows(
    conversations: list[dict], replies: dict[str, str], world: SmolWorld, seed: int
) -> list[dict]:
    """One row per conversation, its family drawn by the conversation's kind."""
    rng = random.Random(seed)
    rows = []
    for conv in conversations:
        weights = FAMILY_WEIGHTS[conv["kind"]]
        family = rng.choices(list(weights), list(weights.values()))[0]
        question, answer = question_and_answer(family, conv, world, rng)
        messages, header = with_reply(conv, replies.get(conv["id"]))
        rows.append(
            make_row(
                question,
                answer,
                messages=messages,
                control="system",
                positions="non_system",
                sample_positions=rng.random() < SAMPLED_POSITIONS_SHARE,
                add_generation_prompt=header,
                source=f"smol_world/{family}" + ("/reply" if not header else ""),
            )
        )
    return rows


def context_rows(texts: list[str], tokenizer, n: int, seed: int, k: int = 4) -> list[dict]:
    """``n`` context-prediction rows over ``texts`` (the target's replies), K-token windows of
    1..8 tokens; the builder's questions replaced by this world's training wordings."""
    from training.builders.context import context_prediction

    rng = random.Random(seed + 7)
    rows = []
    # the builder can draw a window that does not fit a text shorter than k + 8 + 2 tokens
    texts = [t for t in texts if len(tokenizer(t, add_special_tokens=False)["input_ids"]) >= k + 10]
    for row in context_prediction(texts, tokenizer, n=n, k=k, max_span=8, seed=seed):
        family = "context_next" if "next" in row["question"] else "context_previous"
        row["question"] = rng.choice(Q.QUESTIONS[family]["train"]).format(k=k)
        row["source"] = f"smol_world/{family}"
        rows.append(row)
    return rows
