"""Held-out evaluation items of the SmolLM2 world, written as a suite (JSONL, one item a line).

Fields of an item (the evaluation issue's suite format; until that module exists, exactly these):

- ``id``: unique; ``family``: persona | secret | instructed | context_next | context_previous;
- ``conversation``: chat messages (system prompt included: the hidden part) or null;
  ``text``: plain text (context items) or null; ``add_generation_prompt``: render the
  assistant header after a conversation that ends with the user turn;
- ``read_span``: the position spec read (``non_system``, or ``last:K`` for a K-token window);
- ``question``: asked in a held-out wording; ``gold``: the answer; ``aliases``: other accepted
  answers (a persona's role words; for context: none, scored by exact match and token-F1);
- ``label``: the class (persona name, secret word, "none"; the gold text for context);
- ``tags``: split tags: ``heldout_user`` (every item), ``heldout_question`` (every item),
  ``heldout_system`` (system prompt in a held-out phrasing), ``unseen_persona``,
  ``heldout_combo``, ``default_system``, ``no_reply`` / ``reply``, and ``hidden`` (the read
  span carries no label word and the text-only baseline cannot place it; set by the
  evaluation, which rewrites the file).
"""

from __future__ import annotations

import random

from training.smol_world import questions as Q
from training.smol_world.oracle_data import question_and_answer, with_reply
from training.smol_world.world import SmolWorld


def _tags(conv: dict, has_reply: bool) -> list[str]:
    tags = ["heldout_user", "heldout_question", "reply" if has_reply else "no_reply"]
    if conv["system_split"] == "heldout":
        tags.append("heldout_system")
    if conv["unseen_persona"]:
        tags.append("unseen_persona")
    if conv["heldout_combo"]:
        tags.append("heldout_combo")
    if conv["kind"] == "default":
        tags.append("default_system")
    return tags


def conversation_items(
    conversations: list[dict], replies: dict[str, str], world: SmolWorld, seed: int
) -> list[dict]:
    """Persona items for every held-out conversation, secret items for those with a secret
    (and a share of those without), each asked in a held-out wording."""
    rng = random.Random(seed + 13)
    items = []
    for conv in conversations:
        reply = replies.get(conv["id"])
        messages, header = with_reply(conv, reply)
        families = ["persona"]
        if conv["secret"] is not None or rng.random() < 0.15:
            families.append("secret")
        for family in families:
            question, gold = question_and_answer(family, conv, world, rng, split="heldout")
            if family == "persona":
                persona = world.by_name[conv["persona"]] if conv["persona"] else None
                label = persona.name if persona else "none"
                aliases = list(persona.aliases) if persona else []
            else:
                label = conv["secret"] or "none"
                aliases = [conv["secret"]] if conv["secret"] else []
            items.append(
                {
                    "id": f"{conv['id']}-{family}",
                    "family": family,
                    "conversation": messages,
                    "text": None,
                    "add_generation_prompt": header,
                    "read_span": "non_system",
                    "question": question,
                    "gold": gold,
                    "aliases": aliases,
                    "label": label,
                    "kind": conv["kind"],
                    "tags": _tags(conv, reply is not None),
                }
            )
    return items


def context_items(texts: list[str], tokenizer, n: int, seed: int, k: int = 4) -> list[dict]:
    """Context-prediction items over held-out replies: a window of 1..8 tokens read
    (``last:K`` of the text up to the window's end), the k tokens after or before it asked."""
    from training.builders.context import context_prediction

    rng = random.Random(seed + 17)
    items = []
    # the builder can draw a window that does not fit a text shorter than k + 8 + 2 tokens
    texts = [t for t in texts if len(tokenizer(t, add_special_tokens=False)["input_ids"]) >= k + 10]
    for i, row in enumerate(context_prediction(texts, tokenizer, n=n, k=k, max_span=8, seed=seed)):
        family = "context_next" if "next" in row["question"] else "context_previous"
        items.append(
            {
                "id": f"context-{i:05d}",
                "family": family,
                "conversation": None,
                "text": row["prompt"],
                "add_generation_prompt": False,
                "read_span": row["positions"],
                "question": rng.choice(Q.QUESTIONS[family]["heldout"]).format(k=k),
                "gold": row["answer"],
                "aliases": [],
                "label": row["answer"],
                "kind": "context",
                "tags": ["heldout_user", "heldout_question", "reply"],
            }
        )
    return items


def eval_rows(
    conversations: list[dict], replies: dict[str, str], world: SmolWorld, n: int, seed: int
) -> list[dict]:
    """A small held-out set in the training schema (held-out users, phrasings and wordings),
    for the eval loss tracked during training. Held-out personas are left out: their names
    are never trained, so their loss says nothing about when to stop."""
    from training.schema import make_row

    rows = []
    for item in conversation_items(conversations, replies, world, seed):
        if "unseen_persona" in item["tags"]:
            continue
        rows.append(
            make_row(
                item["question"],
                item["gold"],
                messages=item["conversation"],
                control="system",
                positions="non_system",
                sample_positions=False,
                add_generation_prompt=item["add_generation_prompt"],
                source=f"smol_world/{item['family']}",
            )
        )
        if len(rows) >= n:
            break
    return rows
