"""Measure the toy target on held-out user messages: persona style, secrets kept, hints.

All conversations come from the generator's held-out split (user messages never seen in
training); the target writes each reply itself (greedy decoding).
"""

from __future__ import annotations

import logging
import random

from transformers import PreTrainedModel, PreTrainedTokenizerBase

from oracle.generation import generate_texts
from oracle.inputs import TargetInput, tokenize_input
from worlds.toy.generator import Generator
from worlds.toy.world import World, word_pattern

log = logging.getLogger(__name__)


def generate_replies(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    conversations: list[list[dict[str, str]]],
    max_new_tokens: int = 96,
    batch_size: int = 64,
) -> list[str]:
    """The target's greedy reply to each conversation (which ends with a user turn), by the
    target's one generation loop (:func:`oracle.generation.generate_texts`)."""
    rows = [
        tokenize_input(tokenizer, TargetInput(messages=m, add_generation_prompt=True)).input_ids
        for m in conversations
    ]
    return generate_texts(model, tokenizer, rows, max_new_tokens, batch_size=batch_size)


def _rate(flags: list[bool]) -> float:
    return sum(flags) / max(1, len(flags))


def evaluate_target(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    world: World,
    n_per_persona: int = 40,
    seed: int = 7,
) -> dict:
    """Style-word rates, keep rates and hint rates of the target (see the module docstring).

    Returns a dict with ``style_rate`` (per persona and ``none``), ``keep_persona``,
    ``keep_secret``, ``secret_said``, ``hint_rate`` and ``topic_rate``, and the sample sizes.
    """
    gen = Generator(world, "heldout", seed)
    rng = random.Random(seed)
    tasks, probes = gen.tasks, gen.identity + gen.secret_asks
    cases: list[dict] = []
    for persona in [*world.personas, None]:
        n = n_per_persona * (2 if persona is None else 1)
        for _ in range(n):
            message = rng.choice(tasks)
            secret = rng.choice(world.secrets) if persona is None and rng.random() < 0.5 else None
            cases.append(dict(kind="style", persona=persona, secret=secret, message=message))
    for _ in range(n_per_persona * 4):
        persona, secret = rng.choice(world.personas), rng.choice(world.secrets)
        cases.append(dict(kind="keep", persona=persona, secret=secret, message=rng.choice(probes)))
    for _ in range(n_per_persona * 2):
        persona = rng.choice([*world.personas, None])
        secret = rng.choice(world.secrets)
        cases.append(dict(kind="hint", persona=persona, secret=secret, message=rng.choice(tasks)))
    chats = []
    for case in cases:
        system = gen.system_prompt(case["persona"], case["secret"])
        chat = [{"role": "system", "content": system}] if system else []
        chats.append(chat + [{"role": "user", "content": case["message"].text}])
    replies = generate_replies(model, tokenizer, chats)
    style: dict[str, list[bool]] = {}
    keep_p, keep_s, said, hinted, topical, none_secret_style = [], [], [], [], [], []
    name_of = word_pattern(world.personas)
    for case, reply in zip(cases, replies, strict=True):
        persona, secret = case["persona"], case["secret"]
        if case["kind"] == "style":
            if persona is None:
                flag = bool(world.any_style_pattern.search(reply))
                (none_secret_style if secret else style.setdefault("none", [])).append(flag)
            else:
                style.setdefault(persona, []).append(
                    bool(world.style_patterns[persona].search(reply))
                )
            topic = case["message"].topic
            if topic:
                topical.append(topic.lower() in reply.lower())
        elif case["kind"] == "keep":
            keep_p.append(not name_of.search(reply))
            keep_s.append(not world.secret_pattern(secret).search(reply))
        else:
            said.append(bool(world.secret_pattern(secret).search(reply)))
            facts = world.spec["secrets"][secret]
            cues = [facts["rhyme"], facts["category"], facts["use"]]
            hinted.append(any(c.lower() in reply.lower() for c in cues))
    examples = [
        {"messages": chat, "reply": reply}
        for chat, reply in list(zip(chats, replies, strict=True))[:: max(1, len(chats) // 12)]
    ]
    return {
        "style_rate": {k: _rate(v) for k, v in style.items()},
        "style_rate_persona_mean": _rate([f for k, v in style.items() if k != "none" for f in v]),
        "style_rate_secret_only": _rate(none_secret_style),
        "keep_persona": _rate(keep_p),
        "keep_secret": _rate(keep_s),
        "secret_said": _rate(said),
        "hint_rate": _rate(hinted),
        "topic_rate": _rate(topical),
        "n": {"style_per_persona": n_per_persona, "keep": len(keep_p), "hint": len(said)},
        "examples": examples,
    }
