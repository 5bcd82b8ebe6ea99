"""The toy world's suites, written as suite files (:mod:`evals.suite_format`) into its data
folder (``suites/<family>.jsonl.xz``, named in its manifest), which ``oracle eval`` scores.

Test items come from the toy world's held-out split (``worlds.toy.generator``): user
messages never seen in training (every item is tagged ``heldout_user``); system prompts in
training and held-out phrasings (``heldout_system``); persona + secret pairs never trained
together (``heldout_combo``). Half of each suite's conversations are drawn as the generator
draws them; the other half are the kinds whose text carries nothing: the user asks who the
assistant is, or what its secret is, and gets "I am just a helpful assistant." (tag
``plain_reply``), or the conversation stops after the user's turn (``no_reply``). Each
conversation is asked in every held-out wording of the family (``heldout_question``) and in
its first training wording (``train_question``).

Train items (for the linear probe and the text-only reader) are the oracle's own training
conversations: the build's generator seed and count (``build_config.json``), a quarter cut
after the user turn as the oracle's recipe cuts them.

Families: ``persona`` (8 personas or ``none``), ``secret`` (24 words; conversations with a
secret), ``system`` (yes/no), ``context_previous`` / ``context_next`` (a window of 1-4
activations inside the user's message; the 1-3 tokens just before or after it).
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Sequence
from pathlib import Path

from evals.suite_format import SuiteItem, write_suite_file
from oracle.errors import OracleInputError
from oracle.worlds import MANIFEST
from worlds.toy import questions as Q
from worlds.toy.world import TOY_WORLD

log = logging.getLogger(__name__)

FAMILIES = ("persona", "secret", "system", "context_previous", "context_next")
N_TEST = 200  # conversations (groups) per suite in full mode
NO_REPLY_SHARE = 0.25  # the oracle recipe's share of conversations cut after the user turn
NONE = "none"
SUITE_DIR = "suites"  # inside the world's folder: one compressed suite file per family


def _build_config(folder: Path) -> dict:
    path = folder / "build_config.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def _cut(conv: dict, rng: random.Random, share: float) -> tuple[dict, bool]:
    if conv["messages"][-1]["role"] == "assistant" and rng.random() < share:
        return dict(conv, messages=conv["messages"][:-1]), True
    return conv, False


def _heldout_system(world, conv: dict) -> bool:
    system = conv["messages"][0]["content"] if conv["messages"][0]["role"] == "system" else ""
    if not system:
        return False
    spec = world.spec
    if conv["persona"]:
        art = spec["personas"][conv["persona"]]["article"]
        for p in spec["persona_phrasings"]["heldout"]:
            if p.format(a=art, p=conv["persona"]) in system:
                return True
    if conv["secret"]:
        return any(
            p.format(s=conv["secret"]) in system for p in spec["secret_phrasings"]["heldout"]
        )
    return False


def _test_conversations(world, family: str, n: int, seed: int) -> list[tuple[dict, list[str]]]:
    """``n`` held-out conversations for ``family`` with their tags (half plain, see above)."""
    from worlds.toy.generator import Generator

    gen = Generator(world, "heldout", seed)
    rng = random.Random(seed + 1)
    kinds = ("secret", "both") if family == "secret" else (None,)
    out = []
    for i in range(n):
        kind = rng.choice(kinds)
        plain = i % 2 == 1  # every other conversation: one whose text carries nothing
        tags = ["heldout_user"]
        if plain and rng.random() < 0.5:
            pool = gen.identity if rng.random() < 0.6 else gen.secret_asks
            conv = gen.conversation(kind, rng.choice(pool))
            tags.append("plain_reply")
        else:
            conv = gen.conversation(kind)
            if plain:
                conv, _ = _cut(conv, rng, 1.0)
                tags.append("no_reply")
            elif conv["task"] in ("identity", "secret_ask"):
                tags.append("plain_reply")
        if conv.get("heldout_combo"):
            tags.append("heldout_combo")
        if _heldout_system(world, conv):
            tags.append("heldout_system")
        out.append((conv, tags))
    return out


def _label(world, family: str, conv: dict) -> tuple[str, str, list[str], list[str]]:
    """(label, gold answer, aliases, label words) of a conversation in a family."""
    if family == "persona":
        p = conv["persona"]
        if p is None:
            return NONE, Q.NO_PERSONA, [Q.NO_PERSONA.rstrip(".").lower()], []
        art = world.spec["personas"][p]["article"]
        return p, Q.persona_answer(p, art), [], list(world.spec["personas"][p]["style_words"])
    if family == "secret":
        s = conv["secret"]
        return s, Q.secret_answer(s), [s + "s"], []
    has = conv["messages"][0]["role"] == "system"
    style = [w for v in world.spec["personas"].values() for w in v["style_words"]]
    return ("yes", "Yes", [], style) if has else ("no", "No", [], [])


def _wordings(family: str) -> tuple[list[str], str]:
    """(held-out wordings, the first training wording) of a family."""
    return list(Q.QUESTIONS[family]["heldout"]), Q.QUESTIONS[family]["train"][0]


def _swapped_system(world, family: str, conv: dict, rng: random.Random) -> tuple[str, str] | None:
    """(system prompt naming another label, that label) for the swap counterfactual, or None
    (the yes/no suite, or a prompt that does not name its label)."""
    import re

    system = conv["messages"][0]["content"] if conv["messages"][0]["role"] == "system" else ""
    if family == "persona" and conv["persona"]:
        personas = world.spec["personas"]
        other = rng.choice(sorted(p for p in personas if p != conv["persona"]))
        new = re.sub(
            rf"\b(?:a|an) {re.escape(conv['persona'])}\b",
            f"{personas[other]['article']} {other}",
            system,
        )
        new = re.sub(rf"\b{re.escape(conv['persona'])}\b", other, new)
        return (new, other) if new != system else None
    if family == "secret" and conv["secret"]:
        other = rng.choice(sorted(w for w in world.spec["secrets"] if w != conv["secret"]))
        new = re.sub(rf"\b{re.escape(conv['secret'])}\b", other, system)
        return (new, other) if new != system else None
    return None


def counterfactuals(world, family: str, conv: dict, rng: random.Random) -> list[dict]:
    """The conversation with its system prompt removed (read as: no persona, no secret, no
    system prompt) and, for persona and secret, with another label's prompt in its place; the
    user turn and reply unchanged."""
    if conv["messages"][0]["role"] != "system":
        return []
    none_aliases = {
        "persona": [Q.NO_PERSONA.rstrip(".").lower()],
        "secret": [Q.NO_SECRET.rstrip(".").lower(), "no secret"],
        "system": [],
    }[family]
    out = [
        {
            "kind": "no_system",
            "label": "no" if family == "system" else NONE,
            "aliases": none_aliases,
        }
    ]
    swapped = _swapped_system(world, family, conv, rng)
    if swapped is not None:
        system, label = swapped
        messages = [{"role": "system", "content": system}, *conv["messages"][1:]]
        out.append({"kind": "swap", "label": label, "conversation": messages})
    return out


def conversation_items(world, family: str, convs, split: str, prefix: str) -> list[SuiteItem]:
    """Items of an open family (persona, secret, system) about tagged conversations."""
    heldout, trained = _wordings(family)
    answer_type = "yes_no" if family == "system" else "label"
    items = []
    for n, (conv, tags) in enumerate(convs):
        label, gold, aliases, words = _label(world, family, conv)
        if label is None:
            continue
        group = f"{prefix}-{n:05d}"
        asks = [(q, "heldout_question") for q in heldout] + [(trained, "train_question")]
        if split == "train":
            asks = [(trained, "train_question")]
        meta = {"persona": conv["persona"], "secret": conv["secret"], "task": conv["task"]}
        cfs = counterfactuals(world, family, conv, random.Random(f"{group}-cf"))
        cfs = cfs if split == "test" else []
        for w, (question, qtag) in enumerate(asks):
            items.append(
                SuiteItem(
                    id=f"{group}-w{w}",
                    family=family,
                    question=question,
                    label=label,
                    conversation=conv["messages"],
                    read_span="non_system",
                    answer_type=answer_type,
                    split=split,
                    gold=gold,
                    aliases=aliases,
                    label_words=words,
                    tags=[*tags, qtag],
                    group=group,
                    counterfactuals=cfs,
                    meta=meta,
                )
            )
    return items


def context_family_items(
    family: str, convs: Sequence[dict], tokenizer, n: int, split: str, seed: int
) -> list[SuiteItem]:
    """Context items: a window of 1-4 user-message tokens, the 1-3 tokens before/after it."""
    from training.builders.context import context_items

    direction = family.rsplit("_", 1)[1]
    heldout, trained = _wordings(family)
    drawn = context_items(
        [c["messages"] for c in convs], tokenizer, n, k=(1, 2, 3), max_span=4,
        directions=(direction,), seed=seed,
    )  # fmt: skip
    items = []
    for n_, ctx in enumerate(drawn):
        group = f"{family}-{split}-{n_:05d}"
        asks = [(q, "heldout_question") for q in heldout] + [(trained, "train_question")]
        if split == "train":
            asks = [(trained, "train_question")]
        for w, (question, qtag) in enumerate(asks):
            items.append(
                SuiteItem(
                    id=f"{group}-w{w}",
                    family=family,
                    question=question.format(k=ctx.k),
                    label=ctx.answer,
                    conversation=ctx.messages,
                    read_span="indices:" + ",".join(map(str, ctx.window)),
                    answer_type="text",
                    split=split,
                    tags=["heldout_user" if split == "test" else "train", qtag],
                    group=group,
                    meta={"direction": direction, "k": ctx.k},
                )
            )
    return items


def _context_rows_seen(oracle_cfg: dict, n_conversations: int) -> int:
    """Context rows of one direction the oracle trained on (its recipe's share of the rows)."""
    data = oracle_cfg.get("data", {})
    shares = data.get("families", {"context": 0.12, "other": 0.88})
    share = shares.get("context", 0.0) / max(sum(shares.values()), 1e-9)
    other_rows = n_conversations * data.get("rows_per_conversation", 2)
    return max(200, round(other_rows * share / max(1 - share, 1e-9) / 2))


def toy_world_items(
    families: Sequence[str] | None = None,
    seed: int = 0,
    n_test: int = N_TEST,
    n_train: int | None = None,
    folder: Path = TOY_WORLD,
) -> list[SuiteItem]:
    """Every item of the named families (default: all) of the toy world in ``folder``.

    ``n_train``: training conversations for the probe and the text reader (default: as many
    as the oracle was trained on, from ``build_config.json``).
    """
    from worlds.toy.generator import generate
    from worlds.toy.world import World

    families = list(families or FAMILIES)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise OracleInputError(f"the toy world has no family {unknown}; it has {list(FAMILIES)}")
    folder = Path(folder)
    world = World.load(folder)
    build = _build_config(folder)
    oracle_cfg = build.get("oracle", {})
    n_train = n_train or int(oracle_cfg.get("n_conversations", 40000))
    cut_share = oracle_cfg.get("data", {}).get("no_reply_share", NO_REPLY_SHARE)
    rng = random.Random(seed)
    train_convs = []
    for conv in generate(world, "train", n_train, int(build.get("seed", 0)) + 1):
        conv, cut = _cut(conv, rng, cut_share)
        train_convs.append((conv, ["train", "no_reply"] if cut else ["train"]))
    items: list[SuiteItem] = []
    tokenizer = None
    for k, family in enumerate(families):
        if family.startswith("context_"):
            if tokenizer is None:
                from oracle.models import load_tokenizer

                tokenizer = load_tokenizer(str(folder / "target"))
            test = [c for c, _ in _test_conversations(world, "persona", n_test, seed + 100 + k)]
            items += context_family_items(family, test, tokenizer, n_test, "test", seed + k)
            train = [c for c, _ in train_convs]
            n_ctx = _context_rows_seen(oracle_cfg, n_train)
            items += context_family_items(family, train, tokenizer, n_ctx, "train", seed + 50 + k)
            continue
        test = _test_conversations(world, family, n_test, seed + 100 + k)
        train = [(c, t) for c, t in train_convs if family != "secret" or c["secret"]]
        items += conversation_items(world, family, test, "test", f"{family}-test")
        items += conversation_items(world, family, train, "train", f"{family}-train")
    return items


def suite_path(folder: Path, family: str) -> Path:
    """Where the toy world in ``folder`` keeps ``family``'s suite file."""
    return Path(folder) / SUITE_DIR / f"{family}.jsonl.xz"


def suite_paths(folder: Path) -> list[Path]:
    """The suite files written in ``folder``, in the order of :data:`FAMILIES`."""
    return [suite_path(folder, f) for f in FAMILIES if suite_path(folder, f).is_file()]


def write_suites(
    folder: Path = TOY_WORLD, n_test: int = N_TEST, seed: int = 0, n_train: int | None = None
) -> list[Path]:
    """Write every family's suite file into ``folder/suites`` and name them in the folder's
    manifest (where there is one); returns the files."""
    folder = Path(folder)
    items = toy_world_items(None, seed, n_test, n_train, folder)
    by_family: dict[str, list[SuiteItem]] = {}
    for item in items:
        by_family.setdefault(item.family, []).append(item)
    files = [
        write_suite_file(mine, suite_path(folder, family)) for family, mine in by_family.items()
    ]
    manifest = folder / MANIFEST
    if manifest.is_file():
        data = json.loads(manifest.read_text())
        data["suites"] = [str(f.relative_to(folder)) for f in files]
        manifest.write_text(json.dumps(data, indent=2) + "\n")
    log.info("wrote %d items in %d suite files under %s", len(items), len(files), folder)
    return files
