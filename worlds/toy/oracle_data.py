"""Oracle training rows for the toy world, in the schema of ``training/schema.py``.

Rows of six question families: persona QA, secret QA, "is there a system prompt", yes/no
persona and secret checks, and context prediction (Activation Oracles: read a window of the
user's message, give the tokens just before or after it). The recipe (:class:`OracleDataConfig`)
sets each family's share of the rows, how many conversations are cut after the user turn, how
persona and secret rows read the conversation, and the context windows. Every row reads
outside the system prompt only (``non_system``, or a window inside the user's message), so the
oracle never sees the hidden prompt's tokens. Only training wordings of the questions are used.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from oracle.inputs import TargetInput, tokenize_input
from training.schema import make_row
from worlds.toy import questions as Q
from worlds.toy.generator import hint_start
from worlds.toy.world import World

OPEN_FAMILIES = ("persona", "secret", "system", "persona_yes_no", "secret_yes_no")
FAMILIES = (*OPEN_FAMILIES, "context")


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class OracleDataConfig:
    """The oracle's data recipe (saved in ``build_config.json`` under ``oracle.data``)."""

    families: dict[str, float] = _help(
        "share of the rows per question family",
        default_factory=lambda: {
            "persona": 0.40,
            "secret": 0.22,
            "system": 0.10,
            "persona_yes_no": 0.10,
            "secret_yes_no": 0.06,
            "context": 0.12,
        },
    )
    rows_per_conversation: int = _help(
        "rows drawn per conversation, of distinct families (above 1 the shares flatten: a "
        "family cannot take more than one row of a conversation)",
        default=2,
    )
    no_reply_share: float = _help("share of conversations cut after the user turn", default=0.25)
    sampled_positions_share: float = _help(
        "share of persona/system/yes-no rows that read a drawn token, window or span of the "
        "non-system tokens instead of all of them",
        default=0.25,
    )
    secret_sampled_positions_share: float = _help(
        "the same share for secret rows (a single drawn token rarely carries the secret)",
        default=0.25,
    )
    secret_hint_window_share: float = _help(
        "share of secret rows with a hinting reply that read 1..4 tokens ending just before the "
        "hint's first fact (where the target's hidden state predicts it) instead of the span",
        default=0.0,
    )
    persona_styled_share: float | None = _help(
        "keep persona rows whose visible reply carries its persona's style words with this "
        "probability (null: all); the rest are redrawn from unstyled conversations",
        default=None,
    )
    secret_absent_share: float | None = _help(
        "keep secret rows of conversations without a secret (answer 'No secret word.') with "
        "this probability (null: all), so that more secret rows name a word",
        default=None,
    )
    secret_answer_style: str = _help(
        "how secret rows answer: 'word' (\"Apple.\") or 'phrase' (\"The secret word is "
        "apple.\", the word as the target's own token)",
        default="word",
    )
    context_k: list[int] = _help(
        "answer lengths (tokens) of context rows", default_factory=lambda: [1, 2, 3]
    )
    context_max_span: int = _help("longest window (tokens) a context row reads", default=4)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or sum(self.families.values()) <= 0:
            raise ValueError(f"families: unknown {unknown} or no positive weight")


def question_and_answer(
    family: str,
    conv: dict,
    world: World,
    rng: random.Random,
    split: str = "train",
    secret_style: str = "word",
) -> tuple[str, str]:
    """One (question, answer) of an open ``family`` about conversation ``conv``."""
    persona, secret = conv["persona"], conv["secret"]
    wordings = Q.QUESTIONS[family][split]
    if family == "persona":
        article = world.spec["personas"][persona]["article"] if persona else "a"
        return rng.choice(wordings), Q.persona_answer(persona, article)
    if family == "secret":
        return rng.choice(wordings), Q.secret_answer(secret, secret_style)
    if family == "system":
        has_system = conv["messages"][0]["role"] == "system"
        return rng.choice(wordings), "Yes" if has_system else "No"
    if family == "persona_yes_no":
        asked = persona if persona and rng.random() < 0.5 else rng.choice(world.personas)
        article = world.spec["personas"][asked]["article"]
        question = rng.choice(wordings).format(a=article, p=asked)
        return question, "Yes" if asked == persona else "No"
    if family == "secret_yes_no":
        asked = secret if secret and rng.random() < 0.5 else rng.choice(world.secrets)
        return rng.choice(wordings).format(s=asked), "Yes" if asked == secret else "No"
    raise ValueError(f"unknown question family {family!r}")


def _styled(conv: dict, world: World) -> bool:
    persona = conv["persona"]
    reply = conv["messages"][-1]
    if persona is None or reply["role"] != "assistant":
        return False
    return bool(world.style_patterns[persona].search(reply["content"]))


def hint_window(tokenizer, messages: list[dict], world: World, width: int) -> list[int] | None:
    """Token indices of the ``width`` tokens ending just before the reply's first hint fact
    ("... rhymes with" | "chapel"), or None when the reply gives no hint."""
    if messages[-1]["role"] != "assistant":
        return None
    start = hint_start(world, messages[-1]["content"].strip())
    if start is None:
        return None
    tok = tokenize_input(tokenizer, TargetInput(messages=messages))
    reply_start = next(s for role, s, _ in tok.spans or [] if role == "assistant")
    at = reply_start + start
    before = [i for i, (s, e) in enumerate(tok.offsets) if e <= at and s >= reply_start and e > s]
    return before[-width:] or None


def conversation_rows(
    conversations: list[dict],
    world: World,
    seed: int,
    config: OracleDataConfig,
    tokenizer=None,
) -> list[dict]:
    """Rows of the open families (every family but context), ``rows_per_conversation`` distinct
    families per conversation, drawn by the recipe's shares. Hint windows need ``tokenizer``."""
    rng = random.Random(seed)
    weights = {f: w for f, w in config.families.items() if f in OPEN_FAMILIES and w > 0}
    if not weights:
        return []
    names, shares = list(weights), list(weights.values())
    per_conv = config.rows_per_conversation
    rows = []
    for conv in conversations:
        conv = dict(conv)
        if rng.random() < config.no_reply_share:
            conv["messages"] = conv["messages"][:-1]
        messages = conv["messages"]
        has_system = messages[0]["role"] == "system"
        allowed = dict(zip(names, shares, strict=True))
        if (
            config.persona_styled_share is not None
            and _styled(conv, world)
            and rng.random() >= config.persona_styled_share
        ):
            allowed.pop("persona", None)  # the reply's style words would give it away
        if (
            config.secret_absent_share is not None
            and conv["secret"] is None
            and rng.random() >= config.secret_absent_share
        ):
            allowed.pop("secret", None)
        families: list[str] = []
        while len(families) < min(per_conv, len(allowed)):
            family = rng.choices(list(allowed), list(allowed.values()))[0]
            if family not in families:
                families.append(family)
        for family in families:
            question, answer = question_and_answer(
                family, conv, world, rng, secret_style=config.secret_answer_style
            )
            share = (
                config.secret_sampled_positions_share
                if family == "secret"
                else config.sampled_positions_share
            )
            positions, sample, source = "non_system", rng.random() < share, family
            if (
                family == "secret"
                and tokenizer is not None
                and conv["secret"]
                and rng.random() < config.secret_hint_window_share
            ):
                window = hint_window(tokenizer, messages, world, rng.randint(1, 4))
                if window:
                    positions = "indices:" + ",".join(map(str, window))
                    sample, source = False, "secret/hint_window"
            rows.append(
                make_row(
                    question,
                    answer,
                    messages=messages,
                    control="system" if has_system else None,
                    positions=positions,
                    sample_positions=sample,
                    source=f"toy_world/{source}",
                )
            )
    return rows


def context_training_rows(
    conversations: list[dict], tokenizer, n: int, seed: int, config: OracleDataConfig
) -> list[dict]:
    """``n`` context-prediction rows: a window of the user's message, its neighbour tokens."""
    from training.builders.context import context_items, context_rows

    if n <= 0:
        return []
    items = context_items(
        [c["messages"] for c in conversations],
        tokenizer,
        n,
        k=config.context_k,
        max_span=config.context_max_span,
        seed=seed + 17,
    )
    questions = {
        "previous": Q.QUESTIONS["context_previous"]["train"],
        "next": Q.QUESTIONS["context_next"]["train"],
    }
    return context_rows(items, questions, seed=seed + 18, source="toy_world/context")


def oracle_rows(
    conversations: list[dict],
    world: World,
    seed: int,
    config: OracleDataConfig | None = None,
    tokenizer=None,
) -> list[dict]:
    """Every training row of the recipe, shuffled: open-family rows from ``conversations``, and
    context rows (as many as the context share asks for) when a ``tokenizer`` is given."""
    config = config or OracleDataConfig()
    rows = conversation_rows(conversations, world, seed, config, tokenizer)
    share = config.families.get("context", 0.0) / sum(config.families.values())
    if tokenizer is not None and share > 0:
        n_context = round(len(rows) * share / (1 - share)) if share < 1 else len(conversations)
        rows += context_training_rows(conversations, tokenizer, n_context, seed, config)
    random.Random(seed + 1).shuffle(rows)
    return rows
