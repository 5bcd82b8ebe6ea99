"""The toy world's suites, built with its own generator from its held-out split.

Test items come from ``training.toy_world.generator.generate(world, "heldout", ...)``: every
user message is one never seen in training; a share of the persona + secret pairs are pairs
never seen together in training (split ``unseen_combo``; the rest are ``heldout_user``).
The linear probe's train items come from the train split, with another seed.
"""

from __future__ import annotations

from evals.items import EvalItem, Suite
from evals.suites import QUESTIONS
from oracle.errors import OracleInputError

N_TEST = 240  # test items per suite in full mode
N_TRAIN = 480  # probe train items per suite
NONE_LABEL = "none"
NONE_ALIASES = ["no persona", "no particular persona", "helpful assistant", "nothing", "no one"]


def _item(conv: dict, label: str) -> EvalItem:
    split = "unseen_combo" if conv.get("heldout_combo") else "heldout_user"
    meta = {k: conv.get(k) for k in ("persona", "secret", "task", "topic")}
    return EvalItem(conv["messages"], label, split, meta)


def _label(name: str, conv: dict) -> str | None:
    if name == "persona":
        return conv["persona"] or NONE_LABEL
    if name == "secret":
        return conv["secret"]  # None: the conversation has no secret, not in this suite
    return "yes" if conv["persona"] or conv["secret"] else "no"


def _collect(world, split: str, name: str, n: int, seed: int) -> list[EvalItem]:
    from training.toy_world.generator import Generator
    from training.toy_world.world import UserMessage

    gen = Generator(world, split, seed)
    plain = Generator(world, split, seed + 7)  # counterfactuals: same user turn, no system
    items: list[EvalItem] = []
    for _ in range(50 * n):
        if len(items) >= n:
            break
        conv = gen.conversation()
        label = _label(name, conv)
        if label is None:
            continue
        item = _item(conv, label)
        user = UserMessage(conv["messages"][-2]["content"], conv["task"], "", conv["topic"])
        item.meta["no_system_messages"] = plain.conversation("none", user)["messages"]
        items.append(item)
    return items


def toy_world_suites(
    names: list[str], seed: int = 0, n_test: int = N_TEST, n_train: int = N_TRAIN
) -> dict[str, Suite]:
    """The named suites of the shipped toy world (``data/toy_world``)."""
    try:
        from training.toy_world.world import World
    except ModuleNotFoundError as exc:  # the generator is part of the toy-world package
        raise OracleInputError(f"the toy world's generator is not installed: {exc}") from None
    world = World.load()
    out = {}
    for k, name in enumerate(names):
        if name == "persona":
            labels, aliases = [*world.personas, NONE_LABEL], {NONE_LABEL: NONE_ALIASES}
        elif name == "secret":
            labels, aliases = world.secrets, {s: [s + "s"] for s in world.secrets}
        else:
            labels, aliases = ["yes", "no"], {}
        test = _collect(world, "heldout", name, n_test, seed + 1000 + k)
        train = _collect(world, "train", name, n_train, seed + 2000 + k)
        out[name] = Suite(name, QUESTIONS[name], list(labels), train, test, aliases)
    return out
