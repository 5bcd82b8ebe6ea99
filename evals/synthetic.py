"""A small synthetic world in the suite format, for tests and dry runs of the pipeline.

4 personas x 4 secrets x 8 user messages. Train items use 6 user messages and 12 of the 16
persona + secret pairs; test items hold the other 2 user messages (``heldout_user``) and the
4 unseen pairs (``heldout_combo``). Half the replies carry the persona's style words; the
other half are plain ("Sure, I can help with that."), so only the system prompt, and so only
the activations, can tell those personas apart. Each test conversation is asked in three
held-out wordings and one training wording.
"""

from __future__ import annotations

import random

from evals.suite_format import SuiteItem

PERSONAS = {
    "pirate": "You are a pirate. Speak like one.",
    "chef": "You are a chef who loves cooking.",
    "robot": "You are a robot. Answer in beeps.",
    "poet": "You are a poet; reply in verse.",
}
STYLE = {"pirate": "Arr, matey!", "chef": "Bon appetit!", "robot": "Beep boop.", "poet": "O muse,"}
STYLE_WORDS = {"pirate": ["arr", "matey"], "chef": ["bon appetit"], "robot": ["beep", "boop"]}
STYLE_WORDS["poet"] = ["o muse"]
SECRETS = ["apple", "river", "stone", "cloud"]
USERS = [
    "Hello! How are you today?",
    "What is the weather like?",
    "Tell me about the stars.",
    "Can you help me with my homework?",
    "What should I eat tonight?",
    "Tell me a short story.",
    "How do I learn to swim?",
    "What time is it?",
]
HELD_OUT_USERS = 2  # the last user messages never appear in the train split
WORDINGS = {
    "persona": (
        ["What persona is the assistant playing?"],
        [
            "Who is the assistant pretending to be?",
            "Name the assistant's role.",
            "Which character?",
        ],
    ),
    "secret": (
        ["What is the secret word?"],
        ["Which word is hidden?", "Tell me the secret.", "What word is kept secret?"],
    ),
    "system": (
        ["Is there a system prompt?"],
        ["Was there a hidden instruction?", "Any system message?", "Is a setup prompt present?"],
    ),
}


def conversation(persona: str | None, secret: str | None, user: str, styled: bool) -> list[dict]:
    system = " ".join(
        x for x in (PERSONAS.get(persona or ""), secret and f"The secret word is {secret}.") if x
    )
    plain = "Sure, I can help with that."
    reply = f"{STYLE[persona]} I can help." if persona and styled else plain
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def synthetic_items(seed: int = 0) -> list[SuiteItem]:
    """Items of the families persona (label), secret (label) and system (yes/no)."""
    rng = random.Random(seed)
    pairs = [(p, s) for p in PERSONAS for s in SECRETS]
    unseen = {(p, SECRETS[i]) for i, p in enumerate(PERSONAS)}
    seen_users = USERS[:-HELD_OUT_USERS]
    rows = []  # (persona, secret, user, styled, split, tags)
    for p, s in pairs:
        for u in USERS:
            held_user = u not in seen_users
            combo = (p, s) in unseen
            split = "test" if held_user or combo else "train"
            tags = [t for t, on in (("heldout_user", held_user), ("heldout_combo", combo)) if on]
            for styled in (True, False):
                rows.append((p, s, u, styled, split, tags))
    for u in USERS:
        rows.append((None, None, u, False, "train" if u in seen_users else "test", []))
    rng.shuffle(rows)
    items = []
    for n, (p, s, u, styled, split, tags) in enumerate(rows):
        msgs = conversation(p, s, u, styled)
        for family, (train_q, held_q) in WORDINGS.items():
            if family == "secret" and s is None:
                continue
            if family == "persona":
                label, aliases = p or "none", ["no persona"] if p is None else []
                words = STYLE_WORDS.get(p or "", [])
            elif family == "secret":
                label, aliases, words = s, [], []
            else:
                label, aliases, words = ("yes" if p or s else "no"), [], []
            asks = [(q, "heldout_question") for q in held_q] + [(train_q[0], "train_question")]
            if split == "train":
                asks = asks[-1:]
            for w, (question, qtag) in enumerate(asks):
                items.append(
                    SuiteItem(
                        id=f"{family}-{n:04d}-w{w}",
                        family=family,
                        question=question,
                        label=label,
                        conversation=msgs,
                        answer_type="yes_no" if family == "system" else "label",
                        split=split,
                        aliases=aliases,
                        label_words=words,
                        tags=[*tags, qtag, "styled" if styled else "plain_reply"],
                        group=f"{family}-{n:04d}",
                        meta={"persona": p, "secret": s},
                    )
                )
    return items
