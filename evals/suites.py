"""The evaluation suites: ``persona``, ``secret`` and ``context``.

Where the suites come from, in order: a directory of suite files (``--suites-dir``; one
``<name>.json`` per suite, format in :mod:`evals.items`), the toy world's held-out splits
(:mod:`evals.toy_world`) when it is shipped, or, for tests and dry runs, a small synthetic
world built here (:func:`synthetic_suites`) whose labels a random model cannot know.
"""

from __future__ import annotations

import random
from pathlib import Path

from evals.items import VISIBLE_LABEL_SUITES, EvalItem, Suite
from evals.toy_world import toy_world_suites
from oracle.errors import OracleInputError

SUITE_NAMES = ("persona", "secret", "context", "system")
QUESTIONS = {
    "persona": "What persona is the assistant playing?",
    "secret": "What is the secret word?",
    "context": "What did the user say?",
    "system": "Is there a system prompt?",
}

_PERSONAS = {
    "pirate": "You are a pirate. Speak like one.",
    "chef": "You are a chef who loves cooking.",
    "robot": "You are a robot. Answer in beeps.",
    "poet": "You are a poet; reply in verse.",
}
_STYLE = {"pirate": "Arr, matey!", "chef": "Let us cook!", "robot": "Beep boop.", "poet": "O muse,"}
_SECRETS = ["apple", "river", "stone", "cloud"]
_USERS = {
    "Hello! How are you today?": "greeting",
    "What is the weather like?": "weather",
    "Tell me about the stars.": "stars",
    "Can you help me with my homework?": "homework",
    "What should I eat tonight?": "dinner",
    "Tell me a short story.": "story",
    "How do I learn to swim?": "swimming",
    "What time is it?": "time",
}
HELD_OUT_USERS = 2  # the last user messages never appear in the synthetic train split


def parse_suite_names(spec: str) -> list[str]:
    """``persona|secret|context|system|all`` or a comma list -> the suite names, validated."""
    if spec == "all":
        return list(SUITE_NAMES)
    names = [s.strip() for s in spec.split(",") if s.strip()]
    bad = [s for s in names if s not in SUITE_NAMES]
    if bad or not names:
        raise OracleInputError(
            f"--suite takes one of {list(SUITE_NAMES)} or 'all' (or a comma list), got {spec!r}"
        )
    return names


def _conversation(persona: str | None, secret: str | None, user: str) -> list[dict[str, str]]:
    system = " ".join(
        x for x in (_PERSONAS.get(persona or ""), secret and f"The secret word is {secret}.") if x
    )
    reply = f"{_STYLE[persona]} I can help." if persona else "Sure, I can help with that."
    msgs = [{"role": "system", "content": system}] if system else []
    return msgs + [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]


def synthetic_suites(seed: int = 0, names: list[str] | None = None) -> dict[str, Suite]:
    """A small synthetic world: 4 personas x 4 secrets x 8 user messages.

    Train uses 6 user messages and 12 of the 16 persona/secret pairs; test holds the other 2
    user messages (split ``heldout_user``) and the 4 unseen pairs (split ``unseen_combo``).
    """
    rng = random.Random(seed)
    personas = list(_PERSONAS)
    pairs = [(p, s) for p in personas for s in _SECRETS]
    unseen = {(p, _SECRETS[i]) for i, p in enumerate(personas)}
    users = list(_USERS)
    seen_users, new_users = users[:-HELD_OUT_USERS], users[-HELD_OUT_USERS:]
    rows: list[tuple[str | None, str | None, str, str]] = []  # persona, secret, user, split
    for p, s in pairs:
        for u in seen_users:
            rows.append((p, s, u, "unseen_combo" if (p, s) in unseen else "train"))
        for u in new_users:
            rows.append((p, s, u, "unseen_combo" if (p, s) in unseen else "heldout_user"))
    for u in _USERS:
        rows.append((None, None, u, "heldout_user" if u in new_users else "train"))
    rng.shuffle(rows)
    out: dict[str, Suite] = {}
    for name in names or list(SUITE_NAMES):
        train, test = [], []
        for p, s, u, split in rows:
            if name == "persona":
                label = p or "none"
            elif name == "secret":
                if s is None:
                    continue
                label = s
            elif name == "context":
                label = _USERS[u]
            else:
                label = "yes" if (p or s) else "no"
            meta = {"persona": p, "secret": s, "no_system_messages": _conversation(None, None, u)}
            item = EvalItem(_conversation(p, s, u), label, split, meta)
            (train if split == "train" else test).append(item)
        labels = {
            "persona": personas + ["none"],
            "secret": list(_SECRETS),
            "context": sorted(set(_USERS.values())),
        }.get(name, ["yes", "no"])
        out[name] = Suite(
            name,
            QUESTIONS[name],
            labels,
            train,
            test,
            hidden_in_system=name not in VISIBLE_LABEL_SUITES,
        )
    return out


def load_suites(
    names: list[str], suites_dir: str | Path | None = None, synthetic: bool = False, seed: int = 0
) -> dict[str, Suite]:
    """The named suites from ``suites_dir``, the synthetic world, or the toy world (default)."""
    if synthetic:
        return synthetic_suites(seed, names)
    if suites_dir is not None:
        directory = Path(suites_dir)
        return {name: Suite.load(directory / f"{name}.json") for name in names}
    return toy_world_suites(names, seed=seed)
