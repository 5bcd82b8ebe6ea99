"""The toy world's suites, built with its own generator and questions, from its held-out split.

Test items come from the toy world's held-out split (``training.toy_world.generator``): every
user message is one never seen in training (split ``heldout_user``); in the persona and secret
suites a quarter of the items are persona + secret pairs never seen together in training
(split ``unseen_combo``). Replies are the generator's reference replies. The linear probe's
train items come from the train split, with another seed. Questions are the toy world's own
training phrasings (``training.toy_world.questions``), and labels match its closed answers
("A pirate.", "No persona.", "Apple.", "Yes"/"No", the user's message).
"""

from __future__ import annotations

import random

from evals.items import VISIBLE_LABEL_SUITES, EvalItem, Suite
from oracle.errors import OracleInputError

N_TEST = 200  # test items per suite in full mode
N_TRAIN = 400  # probe train items per suite
COMBO_SHARE = 0.25  # share of persona/secret test items drawn from unseen combinations
NONE = "none"


def _label(name: str, conv: dict) -> str | None:
    """The item's label for suite ``name``; None: the conversation is not in that suite."""
    if name == "persona":
        return conv["persona"] or NONE
    if name == "secret":
        return conv["secret"]
    if name == "context":
        return conv["topic"]
    return "yes" if conv["messages"][0]["role"] == "system" else "no"


def _collect(world, split: str, name: str, n: int, seed: int) -> list[EvalItem]:
    from training.toy_world.generator import Generator
    from training.toy_world.world import UserMessage

    gen = Generator(world, split, seed)
    plain = Generator(world, split, seed + 7)  # counterfactuals: same user turn, no system
    rng = random.Random(seed)
    combos = sorted(world.heldout_combos)
    use_combos = split == "heldout" and name in ("persona", "secret")
    n_combo = round(n * COMBO_SHARE) if use_combos else 0
    items: list[EvalItem] = []
    for i in range(50 * n):
        if len(items) >= n:
            break
        if i < n_combo:
            persona, secret = rng.choice(combos)
            conv = gen.make(persona, secret, gen.user_message(), heldout_combo=True)
        else:
            conv = gen.conversation()
        label = _label(name, conv)
        if label is None:
            continue
        user_text = next(m["content"] for m in conv["messages"] if m["role"] == "user")
        user = UserMessage(user_text, conv["task"], "", conv["topic"])
        meta = {k: conv.get(k) for k in ("persona", "secret", "task", "topic")}
        meta["no_system_messages"] = plain.make(None, None, user)["messages"]
        split_tag = "unseen_combo" if conv.get("heldout_combo") else "heldout_user"
        items.append(
            EvalItem(conv["messages"], label, split_tag if split != "train" else "train", meta)
        )
    rng.shuffle(items)
    return items


def toy_world_suites(
    names: list[str], seed: int = 0, n_test: int = N_TEST, n_train: int = N_TRAIN
) -> dict[str, Suite]:
    """The named suites of the shipped toy world (``data/toy_world``)."""
    try:
        from training.toy_world import questions as Q
        from training.toy_world.world import World
    except ModuleNotFoundError as exc:  # the generator is part of the toy-world package
        raise OracleInputError(f"the toy world's generator is not installed: {exc}") from None
    world = World.load()
    topics = sorted({t for words in world.bank["vocab"].values() for t in words})
    setup = {
        "persona": (
            Q.PERSONA_QUESTIONS["train"][0],
            [*world.personas, NONE],
            {NONE: [Q.NO_PERSONA.rstrip(".").lower()]},
        ),
        "secret": (Q.SECRET_QUESTIONS["train"][0], world.secrets, {}),
        "context": (Q.CONTEXT_QUESTION, topics, {}),
        "system": (Q.SYSTEM_QUESTIONS["train"][0], ["yes", "no"], {}),
    }
    out = {}
    for k, name in enumerate(names):
        question, labels, aliases = setup[name]
        test = _collect(world, "heldout", name, n_test, seed + 1000 + k)
        train = _collect(world, "train", name, n_train, seed + 2000 + k)
        out[name] = Suite(
            name,
            question,
            list(labels),
            train,
            test,
            aliases,
            hidden_in_system=name not in VISIBLE_LABEL_SUITES,
        )
    return out
