"""Steering as a user would run it, and against the baseline a user would pick first.

For each persona, every method makes a vector **with its defaults** (no flags beyond what the
method needs: the question and answer for the oracle, the persona prompt for CAA), chooses its
apply mode and scale on validation prompts (``oracle.steering.make``: the largest effect whose
replies stay fluent), and is then used as saved on held-out neutral prompts that neither step
saw, greedy and sampled. A random vector of the same norm, added the same way, is the control.

Measured per reply: the persona's style words; a text classifier of persona replies (the
evaluation's text reader, fitted on the target's own on-policy persona replies, SmolLM2 world);
the perplexity of the reply under the unsteered target over that of the unsteered replies; and,
where the oracle reads personas, whether it names the steered persona reading the reply.

    python -m scripts.experiments.steering_compare --world toy --methods oracle
    python -m scripts.experiments.steering_compare --world smol --methods caa,oracle --layer 15

Writes ``results.json``, ``README.md`` (tables, replies side by side) and ``rate_vs_fluency.svg``
to ``--out``.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
import torch
import typer

from scripts.experiments.steering_report import save

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@dataclass
class Persona:
    name: str
    answer: str  # the oracle's trained answer, "A pirate."
    prompt: str  # the persona's system prompt (CAA's contrast)
    pattern: re.Pattern  # its style words (and, SmolLM2 world, name and aliases), whole words
    names: re.Pattern  # its name and aliases: what the oracle's answer must say


def is_loop(reply: str, n: int = 8, min_distinct: float = 0.5) -> bool:
    """A reply stuck in a loop: under ``min_distinct`` of its character ``n``-grams are
    distinct ("I, I, I, ...", "ororor...", "the olden' days when the olden' days when ...").
    Such replies can have a low perplexity under the target, so the perplexity ratio alone
    calls them fluent."""
    text = " ".join(reply.split())
    grams = [text[i : i + n] for i in range(len(text) - n + 1)]
    return len(grams) >= 4 * n and len(set(grams)) / len(grams) < min_distinct


def text_scores(replies: list[str], persona: Persona, classify=None) -> dict[str, list[float]]:
    """Per reply, what its text shows: the persona's style words, a loop, and (with
    ``classify``) whether the classifier names the persona."""
    row = {
        "style": [float(bool(persona.pattern.search(r))) for r in replies],
        "loops": [float(is_loop(r)) for r in replies],
    }
    if classify is not None:
        row["classifier"] = [float(y == persona.name) for y in classify(replies)]
    return row


def rescore(results: dict, cast: list[Persona], classify=None) -> None:
    """Recount the style words and loops of every saved reply with ``cast``'s patterns, and
    reclassify them with ``classify`` where given (no model runs)."""
    by_name = {p.name: p for p in cast}
    for name, entry in results["personas"].items():
        persona = by_name[name]
        for rows in entry.values():
            for row in rows.values():
                if isinstance(row, dict) and "replies" in row:
                    row.update(text_scores(row["replies"], persona, classify))
            for point in rows["curve"]:
                if "replies" in point:
                    point["style"] = float(np.mean(text_scores(point["replies"], persona)["style"]))
        if name in results.get("prompted", {}):
            prompted = results["prompted"][name]
            prompted.update(text_scores(prompted["replies"], persona, classify))
        for kind, replies in results["unsteered_replies"].items():
            results["unsteered"][kind][name].update(text_scores(replies, persona, classify))


def toy_world(n_train: int, n_val: int, n_test: int, seed: int):
    from scripts.experiments.steering_toy_run import neutral_prompts
    from worlds.toy.questions import PERSONA_QUESTIONS, persona_answer
    from worlds.toy.world import World

    world = World.load()
    personas = []
    for name in world.personas:
        art = world.spec["personas"][name]["article"]
        personas.append(
            Persona(
                name,
                persona_answer(name, art),
                f"You are {art} {name}.",
                world.style_patterns[name],
                re.compile(rf"\b{re.escape(name)}\b", re.IGNORECASE),
            )
        )
    heldout = neutral_prompts(world, "heldout", n_val + n_test, seed + 1)
    prompts = (neutral_prompts(world, "train", n_train, seed), heldout[:n_val], heldout[n_val:])
    return personas, prompts, PERSONA_QUESTIONS["train"][0], PERSONA_QUESTIONS["heldout"][0], None


def smol_world(n_train: int, n_val: int, n_test: int, seed: int, names: list[str] | None):
    from worlds.smol import questions as Q
    from worlds.smol.world import SmolWorld, word_pattern

    world = SmolWorld.load()
    chosen = (
        [world.by_name[n] for n in names]
        if names
        else [
            world.by_name[n]
            for n in ("pirate", "cowboy", "robot", "poet", "wizard", "detective", "chef", "surfer")
        ]
    )
    personas = [
        Persona(
            p.name,
            Q.persona_answer(p.with_article),
            f"You are {p.with_article}. {p.instruction}",
            word_pattern([p.name, *p.aliases, *p.style_words], possessive=True),
            word_pattern([p.name, *p.aliases], possessive=True),
        )
        for p in chosen
    ]
    rng = random.Random(seed)
    train = [m.text for m in world.user_messages["train"] if m.task != "standalone"]
    held = [m.text for m in world.user_messages["heldout"]]
    rng.shuffle(train)
    rng.shuffle(held)
    prompts = (train[:n_train], held[:n_val], held[n_val : n_val + n_test])
    # prompts for the target's own on-policy replies, the text classifier's training data:
    # training prompts the vectors are not made from, disjoint from the validation and test ones
    on_policy = train[n_train : n_train + ON_POLICY_PROMPTS]
    return (
        personas, prompts, Q.QUESTIONS["persona"]["train"][0], Q.QUESTIONS["persona"]["heldout"][0],
        on_policy,
    )  # fmt: skip


ON_POLICY_PROMPTS = 40


def on_policy_replies(ao, prompts: list[str], cast: list[Persona], max_tokens: int, seed: int):
    """The target's replies to ``prompts`` with each persona's system prompt and with none,
    greedy and sampled: (reply, label) pairs, label a persona's name or "none"."""
    from oracle.steering.generate import generate

    rows = []
    for label, system in [("none", None), *((p.name, p.prompt) for p in cast)]:
        for options in ({}, {"temperature": 0.7, "seed": seed}):
            replies = generate(ao, prompts, max_new_tokens=max_tokens, system=system, **options)
            rows += [
                {"prompt": q, "reply": r, "label": label}
                for q, r in zip(prompts, replies, strict=True)
            ]
    return rows


def fit_classifier(rows: list[dict], seed: int):
    """The evaluation's text reader fitted on on-policy replies: ``classify`` (replies -> labels)
    and its accuracy on replies to a quarter of the prompts held out of its fit."""
    from threadpoolctl import threadpool_limits

    from evals.text_reader import _label_model

    prompts = sorted({r["prompt"] for r in rows})
    random.Random(seed).shuffle(prompts)
    held = set(prompts[: len(prompts) // 4])
    with threadpool_limits(1):
        fit = [r for r in rows if r["prompt"] not in held]
        check = [r for r in rows if r["prompt"] in held]
        model = _label_model([r["reply"] for r in fit], [r["label"] for r in fit], seed)
        predicted = model.predict([r["reply"] for r in check])
        accuracy = float(np.mean([p == r["label"] for p, r in zip(predicted, check, strict=True)]))
        labels = [r["label"] for r in rows]
        model = _label_model([r["reply"] for r in rows], labels, seed)

    def classify(replies: list[str]) -> list[str]:
        return [str(y) for y in model.predict(list(replies))]

    return classify, {
        "held_out_accuracy": accuracy,
        "chance": 1 / len(set(labels)),
        "n_fit": len(rows),
        "n_held_out": len(check),
    }


@app.command()
def main(
    world: Annotated[str, typer.Option(help="toy | smol")] = "toy",
    methods: Annotated[str, typer.Option(help="Comma-separated: oracle, caa.")] = "oracle",
    personas: Annotated[str | None, typer.Option(help="Comma-separated personas.")] = None,
    layer: Annotated[
        int | None, typer.Option(help="Steering block (default: the method's).")
    ] = None,
    n_train: Annotated[int, typer.Option(help="Prompts the vector is made from.")] = 6,
    n_val: Annotated[int, typer.Option(help="Held-out prompts the scale is chosen on.")] = 4,
    n_test: Annotated[int, typer.Option(help="Held-out prompts measured.")] = 10,
    max_tokens: Annotated[int, typer.Option(help="Longest reply.")] = 32,
    curve_scales: Annotated[
        str, typer.Option(help="Scales (times the chosen one) for the rate-vs-fluency curve.")
    ] = "0.25,0.5,1,1.5",
    seed: Annotated[int, typer.Option(help="Seed of prompts, sampling and the control.")] = 0,
    rescore_only: Annotated[
        bool,
        typer.Option(
            "--rescore",
            help="Only recount the style words of the replies saved in --out/results.json "
            "with the current patterns, and rewrite its README (no model runs).",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Keep the personas already in --out/results.json (same settings) and run the "
            "rest.",
        ),
    ] = False,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 2,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("results/steering_compare"),
) -> None:
    """Steer toward each persona with each method at its defaults; write the results."""
    from oracle.oracle import ActivationOracle
    from oracle.steering.config import SteerConfig
    from oracle.steering.generate import generate
    from oracle.steering.make import make_steering_vector
    from oracle.steering.measure import capture_steered, conversations, reply_nll
    from oracle.worlds import get_world

    torch.set_num_threads(threads)
    started = time.time()
    names = [p.strip() for p in personas.split(",")] if personas else None
    if world == "toy":
        cast, (train, val, test), ask_q, check_q, on_policy = toy_world(
            n_train, n_val, n_test, seed
        )
        cast = [p for p in cast if names is None or p.name in names]
    else:
        cast, (train, val, test), ask_q, check_q, on_policy = smol_world(
            n_train, n_val, n_test, seed, names
        )
    on_policy_file = out / "on_policy.json"
    if rescore_only:
        results = json.loads((out / "results.json").read_text())
        classify = None
        if on_policy_file.exists():
            classify, results["classifier"] = fit_classifier(
                json.loads(on_policy_file.read_text()), seed
            )
        rescore(results, cast, classify)
        save(results, out, results["seconds"])
        typer.echo(str(out / "README.md"))
        return
    spec = get_world(world)
    ao = ActivationOracle.load(oracle=str(spec.oracle_dir()), device="cpu")
    read_layer = ao.config.default_layer
    classify = classifier_info = None
    if on_policy:
        # the classifier's data: written once per output folder, reused by --resume and --rescore
        if on_policy_file.exists():
            rows = json.loads(on_policy_file.read_text())
        else:
            rows = on_policy_replies(ao, on_policy, cast, max_tokens, seed)
            out.mkdir(parents=True, exist_ok=True)
            on_policy_file.write_text(json.dumps(rows, indent=1) + "\n")
        classify, classifier_info = fit_classifier(rows, seed)

    def oracle_names(replies: list[str], persona: Persona) -> list[float]:
        convs = conversations(test, replies)
        if not convs:
            return [0.0] * len(replies)
        acts = capture_steered(ao, convs, read_layer, positions="role:assistant")
        answers = ao.answer(acts, [check_q] * len(acts), read_layer, max_new_tokens=10)
        return [float(bool(persona.names.search(a))) for a in answers]

    def measure(replies: list[str], persona: Persona, base_nll: float) -> dict:
        nll = reply_nll(ao, test, replies)
        finite = [x for x in nll if math.isfinite(x)]
        return {
            **text_scores(replies, persona, classify),
            "ppl_ratio": math.exp(sum(finite) / len(finite) - base_nll) if finite else float("inf"),
            "oracle_names": oracle_names(replies, persona),
        }

    settings = {
        "methods": methods, "layer": layer, "personas": personas,
        "curve_scales": curve_scales, "n_train": n_train, "n_val": n_val,
        "n_test": n_test, "max_tokens": max_tokens, "seed": seed, "read_layer": read_layer,
        "question": ask_q, "check_question": check_q,
    }  # fmt: skip
    results: dict | None = None
    if resume and (out / "results.json").exists():
        results = json.loads((out / "results.json").read_text())
        same = {k: v for k, v in results["settings"].items() if k != "personas"}
        if same != {k: v for k, v in settings.items() if k != "personas"}:
            raise typer.BadParameter(
                f"{out / 'results.json'} was made with other settings: {results['settings']}",
                param_hint="--resume",
            )
        results["settings"] = settings
        rescore(results, cast, classify)  # the saved personas, with this run's classifier
    if results is None:
        plain = {
            "greedy": generate(ao, test, max_new_tokens=max_tokens),
            "sampled": generate(ao, test, max_new_tokens=max_tokens, temperature=0.7, seed=seed),
        }
        results = {
            "world": world, "settings": settings, "prompts": {"train": train, "val": val, "test": test},
            "unsteered": {k: {} for k in plain}, "unsteered_replies": plain, "prompted": {},
            "personas": {},
        }  # fmt: skip
    if classifier_info is not None:
        results["classifier"] = classifier_info
    plain = results["unsteered_replies"]
    base_nll = {k: float(np.nanmean(reply_nll(ao, test, v))) for k, v in plain.items()}
    for kind, replies in plain.items():
        for p in cast:
            if p.name not in results["unsteered"][kind]:
                results["unsteered"][kind][p.name] = measure(replies, p, base_nll[kind])
    gen = torch.Generator().manual_seed(seed)
    for persona in cast:
        if persona.name in results["prompted"]:
            continue
        # the target told the persona in its system prompt: what steering stands in for
        replies = generate(ao, test, max_new_tokens=max_tokens, system=persona.prompt)
        results["prompted"][persona.name] = {
            **measure(replies, persona, base_nll["greedy"]),
            "replies": replies,
        }
    for persona in cast:
        if persona.name in results["personas"]:
            for _ in results["personas"][persona.name]:  # its controls' draws, as a fresh run
                torch.randn(ao.d_model, generator=gen)
            continue
        entry: dict = {}
        for method in [m.strip() for m in methods.split(",") if m.strip()]:
            if method == "caa":
                cfg = SteerConfig(method="caa", persona_prompt=persona.prompt, layer=layer)
            else:
                cfg = SteerConfig(question=ask_q, answer=persona.answer, layer=layer)
            t0 = time.time()
            vec = make_steering_vector(ao, train, cfg, val_prompts=val)
            random_vec = torch.randn(vec.vector.shape, generator=gen)
            random_vec = random_vec / random_vec.norm() * vec.vector.norm()
            made = time.time() - t0
            rows: dict = {"chosen": {"apply": vec.apply, "scale": vec.scale}, "seconds": made}
            rows["choice"] = vec.choice
            for kind, options in (("greedy", {}), ("sampled", {"temperature": 0.7, "seed": seed})):
                for name, v in (("steered", vec.vector), ("random", random_vec)):
                    replies = generate(
                        ao, test, v, vec.layer, vec.scale, max_new_tokens=max_tokens,
                        apply=vec.apply, **options,
                    )  # fmt: skip
                    rows[f"{name}_{kind}"] = {
                        **measure(replies, persona, base_nll[kind]),
                        "replies": replies,
                    }
            curve = []
            for mult in [float(x) for x in curve_scales.split(",")]:
                replies = generate(
                    ao, test, vec.vector, vec.layer, vec.scale * mult,
                    max_new_tokens=max_tokens, apply=vec.apply,
                )  # fmt: skip
                m = measure(replies, persona, base_nll["greedy"])
                curve.append({"scale": vec.scale * mult, "style": float(np.mean(m["style"])),
                              "ppl_ratio": m["ppl_ratio"], "replies": replies})  # fmt: skip
            rows["curve"] = curve
            entry[method] = rows
            typer.echo(
                f"{persona.name} / {method}: {vec.apply} x{vec.scale} in {made:.0f} s; style "
                f"{np.mean(rows['steered_greedy']['style']):.2f} (random "
                f"{np.mean(rows['random_greedy']['style']):.2f}), ppl x"
                f"{rows['steered_greedy']['ppl_ratio']:.2f}",
                err=True,
            )
        results["personas"][persona.name] = entry
        # written after every persona: a run stopped early leaves the personas it finished
        save(results, out, time.time() - started)
    typer.echo(str(out / "README.md"))


if __name__ == "__main__":
    app()
