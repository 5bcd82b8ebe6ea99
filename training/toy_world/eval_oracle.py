"""Measure the toy world's oracle on held-out conversations, beside what it must beat.

Conversations come from the generator's held-out split (user messages never seen in training,
a share of persona + secret combinations never seen together, and extra held-out "who are you"
turns so that enough replies carry no style); the target writes each reply itself. The oracle
reads layer ``L`` at every non-system token and is asked each question in training wordings and
in the held-out wordings (rotated over the items). Reported beside it:

- subsets whose visible reply gives nothing away: secret items whose reply carries no hint
  (``secret_no_hint``), persona items whose reply has none of its persona's style words
  (``persona_unstyled``);
- the best constant answer, the oracle's answer distribution (share of its top answer);
- a linear probe on the mean of the same activations, fitted on as many training
  conversations as given (the oracle's own corpus in the build);
- context prediction (``eval_context``) and the black box (the target asked itself).
"""

from __future__ import annotations

import logging
import math
import random
from collections import Counter

import torch

from oracle.inputs import TargetInput
from oracle.oracle import ActivationOracle
from training.toy_world import questions as Q
from training.toy_world.eval_target import generate_replies
from training.toy_world.generator import Generator, hint_start
from training.toy_world.probe import fit_probe, read_features
from training.toy_world.world import World, word_pattern

log = logging.getLogger(__name__)
HELPFUL = "helpful assistant"


def heldout_conversations(
    world: World, n: int, n_combo: int, seed: int, n_identity: int = 0
) -> list[dict]:
    """``n`` random held-out conversations, ``n_combo`` of held-out combinations, and
    ``n_identity`` held-out "who are you" / "what is your secret" turns."""
    gen = Generator(world, "heldout", seed)
    convs = [gen.conversation() for _ in range(n)]
    rng = random.Random(seed)
    combos = sorted(world.heldout_combos)
    for _ in range(n_combo):
        persona, secret = rng.choice(combos)
        convs.append(gen.make(persona, secret, gen.user_message(), heldout_combo=True))
    asks = gen.identity + gen.secret_asks
    for _ in range(n_identity):
        convs.append(gen.conversation(rng.choice(["persona", "secret", "both"]), rng.choice(asks)))
    return convs


def _rate(flags) -> float | None:
    flags = list(flags)
    return sum(flags) / len(flags) if flags else None


def distribution(labels: list[str | None]) -> dict:
    """Share of the top answer, entropy (bits) and the commonest answers."""
    counts = Counter("(none)" if x is None else x for x in labels)
    total = max(1, sum(counts.values()))
    top, top_n = counts.most_common(1)[0] if counts else ("", 0)
    entropy = -sum(c / total * math.log2(c / total) for c in counts.values())
    return {
        "top": top,
        "top_share": top_n / total,
        "entropy_bits": round(entropy, 3),
        "distinct": len(counts),
        "counts": dict(counts.most_common(10)),
    }


def _wordings(family: str, split: str, n: int) -> list[str]:
    wordings = Q.QUESTIONS[family][split]
    return [wordings[i % len(wordings)] for i in range(n)]


def _open_family(ao, world, convs, acts, layer, family, batch_size) -> tuple[dict, dict]:
    """Accuracy of ``family`` (persona or secret) per wording split and subset."""
    idx = [i for i, c in enumerate(convs) if c[family]]
    replies = [convs[i]["messages"][-1]["content"] for i in idx]
    if family == "secret":
        hidden = [hint_start(world, r) is None for r in replies]
        parse = lambda a: Q.parse_secret(a, world.secrets)  # noqa: E731
    else:
        hidden = [
            not world.style_patterns[convs[i]["persona"]].search(r)
            for i, r in zip(idx, replies, strict=True)
        ]
        parse = lambda a: Q.parse_persona(a, world.personas)  # noqa: E731
    subset = "secret_no_hint" if family == "secret" else "persona_unstyled"
    metrics: dict = {}
    answers_of: dict = {}
    for split, suffix in (("train", ""), ("heldout", "_heldout_q")):
        questions = _wordings(family, split, len(idx))
        answers = ao.answer(
            [acts[i] for i in idx], questions, layer, max_new_tokens=8, batch_size=batch_size
        )
        parsed = [parse(a) for a in answers]
        ok = [p == convs[i][family] for p, i in zip(parsed, idx, strict=True)]
        metrics[family + suffix] = _rate(ok)
        metrics[subset + suffix] = _rate(o for o, h in zip(ok, hidden, strict=True) if h)
        metrics[f"{family}_helpful{suffix}"] = _rate(
            o for o, r, h in zip(ok, replies, hidden, strict=True) if h and HELPFUL in r
        )
        metrics[f"{family}_heldout_combos{suffix}"] = _rate(
            o for o, i in zip(ok, idx, strict=True) if convs[i]["heldout_combo"]
        )
        answers_of[split] = distribution(parsed)
        if split == "heldout":
            metrics[f"{family}_by_wording"] = {
                w: _rate(o for o, q in zip(ok, questions, strict=True) if q == w)
                for w in Q.QUESTIONS[family]["heldout"]
            }
    gold = [convs[i][family] for i in idx]
    metrics[f"best_constant_{family}"] = max(Counter(gold).values()) / len(gold) if gold else None
    metrics[f"{family}_answers"] = answers_of
    metrics.setdefault("n", {})
    metrics["n"].update({family: len(idx), subset: sum(hidden)})
    return metrics, {"idx": idx, "hidden": hidden}


def _probe(world, convs, acts, fit_convs, fit_acts, family, subsets) -> dict:
    labels = world.secrets if family == "secret" else world.personas
    keep = [i for i, c in enumerate(fit_convs) if c[family]]
    y_N = torch.tensor([labels.index(fit_convs[i][family]) for i in keep])
    probe = fit_probe(torch.stack([fit_acts[i] for i in keep]), y_N, len(labels))
    idx, hidden = subsets["idx"], subsets["hidden"]
    pred = probe.predict(torch.stack([acts[i].mean(0) for i in idx]))
    ok = [labels[int(p)] == convs[i][family] for p, i in zip(pred, idx, strict=True)]
    subset = "secret_no_hint" if family == "secret" else "persona_unstyled"
    return {
        f"probe_{family}": _rate(ok),
        f"probe_{subset}": _rate(o for o, h in zip(ok, hidden, strict=True) if h),
        f"probe_{family}_n_fit": len(keep),
        f"probe_{family}_l2": probe.l2,
    }


def evaluate_oracle(
    ao: ActivationOracle,
    world: World,
    n: int = 600,
    n_combo: int = 120,
    n_identity: int = 400,
    seed: int = 11,
    reply_source: str = "target",
    batch_size: int = 64,
    probe_conversations: list[dict] | None = None,
    n_context: int = 400,
    n_context_fit: int = 8000,
) -> dict:
    """Oracle accuracies (persona, secret, system prompt, context) and the baselines.

    ``reply_source``: ``"target"`` (the target's own greedy replies) or ``"reference"`` (the
    generator's). ``probe_conversations``: training conversations for the linear probes and
    the context baselines (none: no probe; the context baselines then use 2,000 fresh ones).
    """
    from training.toy_world.eval_context import evaluate_context

    convs = heldout_conversations(world, n, n_combo, seed, n_identity)
    if reply_source == "target":
        prompts = [c["messages"][:-1] for c in convs]
        with ao.adapter_disabled():
            replies = generate_replies(ao.target, ao.tokenizer, prompts, batch_size=batch_size)
        for conv, reply in zip(convs, replies, strict=True):
            conv["messages"] = conv["messages"][:-1] + [{"role": "assistant", "content": reply}]
    layer = ao.config.default_layer
    caps = ao.capture([c["messages"] for c in convs], [layer], "non_system", batch_size)
    acts = [cap.activations[0] for cap in caps]
    metrics: dict = {"n": {}}
    subsets = {}
    for family in ("persona", "secret"):
        fam_metrics, subsets[family] = _open_family(
            ao, world, convs, acts, layer, family, batch_size
        )
        metrics["n"].update(fam_metrics.pop("n"))
        metrics.update(fam_metrics)
    has_system = [c["messages"][0]["role"] == "system" for c in convs]
    for split, suffix in (("train", ""), ("heldout", "_heldout_q")):
        p_system = ao.p_yes(acts, _wordings("system", split, len(acts)), layer, batch_size)
        metrics["system_prompt_detected" + suffix] = _rate(
            (p >= 0.5) == h for p, h in zip(p_system, has_system, strict=True)
        )
        if split == "train":
            metrics["no_system_says_no_system_prompt"] = _rate(
                p < 0.5 for p, h in zip(p_system, has_system, strict=True) if not h
            )
    none = [i for i, h in enumerate(has_system) if not h]
    for family, key in (
        ("persona", "no_system_says_no_persona"),
        ("secret", "no_system_says_no_secret"),
    ):
        answers = ao.answer(
            [acts[i] for i in none],
            _wordings(family, "train", len(none)),
            layer,
            8,
            batch_size=batch_size,
        )
        parse = Q.parse_persona if family == "persona" else Q.parse_secret
        labels = world.personas if family == "persona" else world.secrets
        metrics[key] = _rate(parse(a, labels) is None for a in answers)
    metrics["n"]["no_system"] = len(none)
    metrics["chance_persona"] = 1 / len(world.personas)
    metrics["chance_secret"] = 1 / len(world.secrets)
    train_convs = probe_conversations
    if probe_conversations:
        with ao.adapter_disabled():
            fit = read_features(
                ao.target,
                ao.tokenizer,
                [TargetInput(messages=c["messages"]) for c in probe_conversations],
                layer,
                ["non_system"] * len(probe_conversations),
                batch_size,
            )
        fit_acts = [a.mean(0) for a in fit]
        for family in ("persona", "secret"):
            metrics.update(
                _probe(world, convs, acts, probe_conversations, fit_acts, family, subsets[family])
            )
    else:
        from training.toy_world.generator import generate

        train_convs = generate(world, "train", 2000, seed + 1)
    if n_context:
        metrics["context"] = evaluate_context(
            ao, convs, train_convs, layer, n_context, n_context_fit, seed, batch_size
        )
    metrics["black_box"] = black_box(ao, world, convs, batch_size)
    metrics["examples"] = [
        {
            "messages": convs[i]["messages"],
            "persona": convs[i]["persona"],
            "secret": convs[i]["secret"],
        }
        for i in range(0, len(convs), max(1, len(convs) // 10))
    ]
    return metrics


def black_box(ao: ActivationOracle, world: World, convs: list[dict], batch_size: int) -> dict:
    """Ask the target itself (held-out identity and secret questions) with its system prompt."""
    rng = random.Random(5)
    identity = world.bank["identity"]["heldout"] + world.bank["identity"]["train"][:4]
    secret_q = world.bank["secret_ask"]["heldout"] + world.bank["secret_ask"]["train"][:3]
    cases = []
    for conv in convs:
        if conv["messages"][0]["role"] != "system":
            continue
        system = conv["messages"][:1]
        if conv["persona"]:
            cases.append(
                ("persona", conv, system + [{"role": "user", "content": rng.choice(identity)}])
            )
        if conv["secret"]:
            cases.append(
                ("secret", conv, system + [{"role": "user", "content": rng.choice(secret_q)}])
            )
    with ao.adapter_disabled():
        replies = generate_replies(
            ao.target, ao.tokenizer, [c[2] for c in cases], batch_size=batch_size
        )
    flags: dict[str, list[bool]] = {"persona": [], "secret": []}
    for (kind, conv, _), reply in zip(cases, replies, strict=True):
        if kind == "persona":
            flags[kind].append(bool(word_pattern([conv["persona"]]).search(reply)))
        else:
            flags[kind].append(bool(world.secret_pattern(conv["secret"]).search(reply)))
    return {
        "persona": _rate(flags["persona"]),
        "secret": _rate(flags["secret"]),
        "n": {k: len(v) for k, v in flags.items()},
    }
