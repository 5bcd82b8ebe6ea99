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

from worlds.smol import questions as Q
from worlds.smol.oracle_data import question_and_answer, with_reply
from worlds.smol.world import SmolWorld


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


NONE_ALIASES = {"persona": ["no persona"], "secret": ["no secret word", "no secret"]}


def counterfactuals(
    conv: dict, messages: list[dict], family: str, world: SmolWorld, rng: random.Random
) -> list[dict]:
    """The same conversation (user turn and reply unchanged) with the system prompt removed
    (SmolLM2's template then writes its default prompt: no persona, no secret) and with
    another training persona's (or secret word's) prompt in place of this one's."""
    system = messages[0]["content"]
    out = [{"kind": "no_system", "label": "none", "aliases": NONE_ALIASES[family]}]
    new, label = system, None
    if family == "persona" and conv["persona"] is not None:
        mine = world.by_name[conv["persona"]]
        other = rng.choice([p for p in world.train_personas if p.name != mine.name])
        new = system.replace(mine.instruction, other.instruction)
        new = new.replace(mine.with_article, other.with_article)
        label = other.name
    elif family == "secret" and conv["secret"] is not None:
        other = rng.choice([w for w in world.secrets if w != conv["secret"]])
        new = world.secret_pattern(conv["secret"]).sub(other, system)
        label = other
    if label is not None and new != system:
        swapped = [{"role": "system", "content": new}, *messages[1:]]
        out.append({"kind": "swap", "label": label, "conversation": swapped})
    return out


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
                    "counterfactuals": counterfactuals(conv, messages, family, world, rng),
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


def check_rows(
    conversations: list[dict], world: SmolWorld, n_per_family: int, seed: int
) -> list[dict]:
    """The reading check's rows (``training.reading_check``): ``n_per_family`` persona and as
    many secret questions, hidden by construction (no reply: the visible text is a user
    message drawn independently of the system prompt), in held-out wordings, over held-out
    users. A fifth of each family asks about SmolLM2's default prompt (answer: none); personas
    never trained are left out (a closed answer cannot name them)."""
    from training.schema import make_row

    rng = random.Random(seed + 29)
    pools: dict[str, list[dict]] = {"persona": [], "secret": []}
    defaults = [c for c in conversations if c["kind"] == "default"]
    for family, key in (("persona", "persona"), ("secret", "secret")):
        named = [c for c in conversations if c[key] is not None and not c["unseen_persona"]]
        n_none = n_per_family // 5
        pools[family] = named[: n_per_family - n_none] + defaults[:n_none]
    rows = []
    for family, convs in pools.items():
        for conv in convs:
            question, gold = question_and_answer(family, conv, world, rng, split="heldout")
            messages, header = with_reply(conv, None)
            rows.append(
                make_row(
                    question,
                    gold,
                    messages=messages,
                    control="system",
                    positions="non_system",
                    sample_positions=False,
                    add_generation_prompt=header,
                    source=f"check/{family}",
                )
            )
    return rows


def as_suite_dict(item: dict, world: SmolWorld, split: str = "test") -> dict:
    """One item of :func:`conversation_items` / :func:`context_items` in the evaluation's
    suite format (``evals.suite_format``; a plain dict, so this package needs no evals)."""
    context = item["family"].startswith("context")
    persona = world.by_name.get(item["label"]) if item["family"] == "persona" else None
    group = item["id"].rsplit("-", 1)[0] if not context else item["id"]
    return {
        "id": item["id"],
        "family": item["family"],
        "split": split,
        "conversation": item["conversation"],
        "text": item["text"],
        "add_generation_prompt": bool(item["add_generation_prompt"]),
        "read_span": item["read_span"],
        "question": item["question"],
        "answer_type": "text" if context else "label",
        "label": item["label"],
        "gold": item["gold"],
        "aliases": [a for a in item["aliases"] if a != item["label"]]
        + ([] if item["label"] != "none" else NONE_ALIASES.get(item["family"], [])),
        "label_words": list(persona.style_words) if persona else [],
        "tags": item["tags"],
        "group": group,
        "counterfactuals": item.get("counterfactuals", []),
        "meta": {"kind": item["kind"]},
    }


def train_suite_dicts(
    conversations: list[dict], replies: dict[str, str], world: SmolWorld
) -> list[dict]:
    """The probe's and the text reader's training conversations (persona and secret items,
    asked in the first training wording), split=train."""
    out = []
    for conv in conversations:
        reply = replies.get(conv["id"])
        messages, header = with_reply(conv, reply)
        for family, label in (("persona", conv["persona"]), ("secret", conv["secret"])):
            persona = world.by_name.get(label) if family == "persona" else None
            gold = (
                Q.persona_answer(persona.with_article if persona else None)
                if family == "persona"
                else Q.secret_answer(label)
            )
            out.append(
                {
                    "id": f"{conv['id']}-{family}",
                    "family": family,
                    "split": "train",
                    "conversation": messages,
                    "add_generation_prompt": header,
                    "read_span": "non_system",
                    "question": Q.QUESTIONS[family]["train"][0],
                    "label": label or "none",
                    "gold": gold,
                    "aliases": list(persona.aliases)
                    if persona
                    else ([] if label else NONE_ALIASES[family]),
                    "tags": ["reply" if reply else "no_reply"],
                    "group": conv["id"],
                    "meta": {"kind": conv["kind"]},
                }
            )
    return out
