"""Sample SmolLM2-world conversations: a system prompt (persona, secret, both, or a neutral one)
and a user message. Replies come from the target itself (``replies.py``).

Each conversation is a dict::

    {"id": "train-000123", "split": "train" | "heldout", "kind": "persona" | "secret" | "both"
     | "default" | "neutral", "persona": "pirate" | None, "secret": "moon" | None,
     "system_split": "train" | "heldout" | None, "user_task": "food", "heldout_combo": bool,
     "unseen_persona": bool, "messages": [{"role": "system", ...}, {"role": "user", ...}]}

The system message is always written out, the default one included (SmolLM2's template would
insert the same text when none is given), so the read span is ``non_system`` everywhere.

The train split draws train user messages, train phrasings and train personas, and never a
held-out persona + secret combination. The held-out split draws held-out user messages only;
its phrasings come from both sets (tagged ``system_split``), its personas from both sets
(held-out ones tagged ``unseen_persona``), and a share of its combinations are held-out ones.
"""

from __future__ import annotations

import random

from worlds.smol.world import SmolWorld

# system prompt kinds and their shares
KINDS = (("persona", 0.45), ("secret", 0.20), ("both", 0.15), ("default", 0.14), ("neutral", 0.06))
HELDOUT_PHRASING_SHARE = 0.5  # held-out split: share of system prompts in a held-out phrasing
UNSEEN_PERSONA_SHARE = 0.2  # held-out split: share of persona prompts with a held-out persona
HELDOUT_COMBO_SHARE = 0.5  # held-out split: share of "both" prompts from the held-out combos


def _pick(rng: random.Random, table: tuple[tuple[str, float], ...]) -> str:
    r = rng.random()
    for name, share in table:
        if r < share:
            return name
        r -= share
    return table[-1][0]


def conversation(world: SmolWorld, split: str, rng: random.Random, index: int) -> dict:
    """One conversation of ``split`` ("train" or "heldout"), without a reply."""
    spec = world.spec
    kind = _pick(rng, KINDS)
    if split == "train" and kind == "neutral":
        pass
    elif kind == "neutral":
        kind = "default"  # held-out items use SmolLM2's own default prompt only
    phr_split = "train"
    if split == "heldout" and rng.random() < HELDOUT_PHRASING_SHARE:
        phr_split = "heldout"
    persona = secret = None
    unseen = combo_held = False
    parts = []
    if kind in ("persona", "both"):
        pool = world.train_personas
        if split == "heldout" and kind == "persona" and rng.random() < UNSEEN_PERSONA_SHARE:
            pool, unseen = world.heldout_personas, True
        persona_obj = rng.choice(pool)
        persona = persona_obj.name
    if kind in ("secret", "both"):
        secret = rng.choice(world.secrets)
    if kind == "both":
        if split == "heldout" and rng.random() < HELDOUT_COMBO_SHARE:
            persona, secret = rng.choice(sorted(world.heldout_combos))
            combo_held = True
        else:
            while (persona, secret) in world.heldout_combos:
                persona, secret = rng.choice(world.train_personas).name, rng.choice(world.secrets)
    if persona is not None:
        phrasing = rng.choice(spec["persona_phrasings"][phr_split])
        parts.append(world.persona_prompt(world.by_name[persona], phrasing))
    if secret is not None:
        parts.append(world.secret_prompt(secret, rng.choice(spec["secret_phrasings"][phr_split])))
    if kind == "default":
        parts.append(world.default_system)
        phr_split = None
    elif kind == "neutral":
        parts.append(rng.choice(spec["neutral_prompts"]["train"]))
        phr_split = None
    user = rng.choice(world.user_messages[split])
    return {
        "id": f"{split}-{index:06d}",
        "split": split,
        "kind": kind,
        "persona": persona,
        "secret": secret,
        "system_split": phr_split,
        "user_task": user.task,
        "heldout_combo": combo_held,
        "unseen_persona": unseen,
        "messages": [
            {"role": "system", "content": " ".join(parts)},
            {"role": "user", "content": user.text},
        ],
    }


def generate(world: SmolWorld, split: str, n: int, seed: int) -> list[dict]:
    """``n`` conversations of ``split``, seeded."""
    rng = random.Random(seed)
    return [conversation(world, split, rng, i) for i in range(n)]
