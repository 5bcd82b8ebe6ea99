"""Steering through the oracle on the toy world: does a vector optimised so that the oracle says
"A pirate." make the target *talk* like a pirate?

For each persona: optimise a vector on neutral training prompts (no system prompt), then on
held-out neutral prompts measure, at a few scales, both sides:
- behaviour: the share of replies holding one of the persona's style words, against the
  unsteered baseline; fluency as the perplexity of the replies under the unsteered target,
  relative to the unsteered replies' perplexity;
- the oracle: the share of steered captures about which it names the persona (held-out phrasing).
A random vector of the same norm is the control. A vector that moves the oracle but not the
behaviour is reported as such (optimising against a probe). ``--method lora`` trains a steering
LoRA on the target instead (LatentQA's control); its scale multiplies the LoRA's update, and its
control is a LoRA of random weights with the same norms, matrix by matrix.

    python -m scripts.experiments.steering_toy                       # the toy world, defaults below
    python -m scripts.experiments.steering_toy --oracle DIR --n-eval 8 --steps 5   # a quick check
"""

from __future__ import annotations

import json
import random
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import torch
import typer

from evals.steering_rules import (
    CHOICES,
    behaviour_passes,
    judge,
    perplexity,
    pick_scale,
    style_rate,
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

NEUTRAL_EXCLUDED_TASKS = ("identity", "secret_ask")


def _shown(path) -> str | None:
    """A path as the results show it: relative to the repository when inside it."""
    if path is None:
        return None
    from oracle.defaults import REPO_ROOT

    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


def neutral_prompts(world, split: str, n: int, seed: int) -> list[str]:
    """``n`` seeded user messages of ``split`` that ask nothing about identity or secrets."""
    texts = sorted(
        {m.text for m in world.user_messages[split] if m.task not in NEUTRAL_EXCLUDED_TASKS}
    )
    random.Random(seed).shuffle(texts)
    return texts[:n]


@app.command()
def main(
    target: Annotated[
        str | None, typer.Option(help="Target model (default: the oracle's).")
    ] = None,
    oracle: Annotated[
        Path | None, typer.Option(help="Oracle directory (default: the toy world's).")
    ] = None,
    personas: Annotated[
        str, typer.Option(help="Comma-separated personas to steer toward.")
    ] = "pirate,chef,robot,poet",
    n_train: Annotated[int, typer.Option(help="Neutral prompts the vector is optimised on.")] = 32,
    n_eval: Annotated[int, typer.Option(help="Held-out neutral prompts measured.")] = 40,
    steps: Annotated[int, typer.Option(help="Optimisation steps per persona.")] = 60,
    layer: Annotated[
        int | None, typer.Option(help="Steering block (default: the read layer - 1).")
    ] = None,
    lr: Annotated[float, typer.Option(help="Learning rate (units of the residual norm).")] = 0.05,
    kl_weight: Annotated[float, typer.Option(help="KL regulariser weight.")] = 0.1,
    max_norm: Annotated[
        float | None, typer.Option(help="Norm bound (units of the residual norm).")
    ] = None,
    scales: Annotated[str, typer.Option(help="Comma-separated scales to generate at.")] = "1,2,4",
    method: Annotated[
        str,
        typer.Option(
            help="'vector' (added at a block) or 'lora' (a steering LoRA on the target; the "
            "scale multiplies its update). Give lora a smaller --lr (e.g. 0.005)."
        ),
    ] = "vector",
    apply: Annotated[
        str,
        typer.Option(
            help="Where the vector is added, in optimisation and generation alike: 'all' "
            "positions, 'reply' (from the prompt's last position on) or 'first' (that position "
            "alone)."
        ),
    ] = "all",
    generate_apply: Annotated[
        str | None,
        typer.Option(
            help="Where the vector is added when generating and capturing the steered replies, "
            "if not where it was optimised (--apply): e.g. optimise with --apply reply and "
            "generate with 'first', the reply's start alone."
        ),
    ] = None,
    read: Annotated[
        str,
        typer.Option(
            help="What the oracle reads while the vector is optimised: 'reply' (each training "
            "prompt followed by the unsteered target's reply; the oracle reads the reply) or "
            "'prompt' (the prompt's tokens)."
        ),
    ] = "reply",
    n_val: Annotated[
        int,
        typer.Option(
            help="Held-out prompts, apart from the measured ones, on which the scale is chosen "
            "(0: no choice, a persona passes at any scale)."
        ),
    ] = 10,
    choose: Annotated[
        str,
        typer.Option(
            help="How the scale is chosen among those passing on the validation prompts: "
            "'max-style' (the most on-style) or 'margin' (the largest smaller margin to the "
            "style and perplexity bars: the middle of the fluent window)."
        ),
    ] = "max-style",
    max_tokens: Annotated[int, typer.Option(help="Longest reply, in tokens.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed of the prompt samples and the control.")] = 0,
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("evals/results/steering"),
) -> None:
    """Steer toward each persona and write results.json and results.md to OUT."""
    from tqdm import tqdm

    from oracle.defaults import default_oracle
    from oracle.oracle import ActivationOracle
    from oracle.steering import METHODS, READS, SteerConfig, steer
    from oracle.steering.generate import capture_steered, conversations, generate, reply_nll
    from oracle.steering.lora import STEER_ADAPTER, save_steering_lora
    from training.toy_world.questions import PERSONA_QUESTIONS, parse_persona, persona_answer
    from training.toy_world.world import World

    torch.set_num_threads(threads)
    started = time.time()
    if read not in READS:
        raise typer.BadParameter(f"--read must be one of {READS}")
    if method not in METHODS:
        raise typer.BadParameter(f"--method must be one of {METHODS}")
    world = World.load()
    names = [p.strip() for p in personas.split(",") if p.strip()]
    unknown = [p for p in names if p not in world.personas]
    if unknown:
        raise typer.BadParameter(f"unknown personas {unknown}; the toy world has {world.personas}")
    scale_list = [float(s) for s in scales.split(",")]
    from oracle.steering.apply import APPLIES

    if generate_apply is not None and generate_apply not in APPLIES:
        raise typer.BadParameter(f"unknown --generate-apply {generate_apply!r}; one of {APPLIES}")
    if choose not in CHOICES:
        raise typer.BadParameter(f"unknown --choose {choose!r}; expected one of {CHOICES}")
    if target is None and oracle is None:
        oracle = default_oracle()
    ao = ActivationOracle.load(target, str(oracle) if oracle else None, device="cpu")
    train_prompts = neutral_prompts(world, "train", n_train, seed)
    heldout = neutral_prompts(world, "heldout", n_eval + n_val, seed + 1)
    eval_prompts, val_prompts = heldout[:n_eval], heldout[n_eval:]
    ask_q = PERSONA_QUESTIONS["train"][0]
    check_q = PERSONA_QUESTIONS["heldout"][0]
    read_layer = ao.config.default_layer

    def oracle_rate(prompts, replies, **steering) -> dict[str, float]:
        """Share of prompts about which the oracle names each persona, reading what it was
        steered on: the steered replies (read='reply') or the prompts. ``steering``: what
        :func:`applied` yields."""
        if read == "reply":
            convs = conversations(prompts, replies)
            acts = capture_steered(ao, convs, read_layer, positions="role:assistant", **steering)
        else:
            acts = capture_steered(ao, prompts, read_layer, **steering)
        answers = ao.answer(acts, [check_q] * len(acts), read_layer, max_new_tokens=8)
        named = [parse_persona(a, world.personas) for a in answers]
        return {p: sum(n == p for n in named) / max(1, len(named)) for p in world.personas}

    plain = generate(ao, eval_prompts, max_new_tokens=max_tokens)
    plain_ppl = perplexity(reply_nll(ao, eval_prompts, plain))
    plain_oracle = oracle_rate(eval_prompts, plain)
    baseline = {p: style_rate(world.style_patterns[p], plain) for p in world.personas}
    val_ppl = None
    if val_prompts:
        val_plain = generate(ao, val_prompts, max_new_tokens=max_tokens)
        val_ppl = perplexity(reply_nll(ao, val_prompts, val_plain))
        val_baseline = {p: style_rate(world.style_patterns[p], val_plain) for p in world.personas}
    results: dict = {
        "settings": {
            "target": target,
            "oracle": _shown(oracle),
            "n_train": len(train_prompts),
            "n_eval": len(eval_prompts),
            "n_val": len(val_prompts),
            "choose": choose,
            "read": read,
            "method": method,
            "apply": apply,
            "generate_apply": generate_apply or apply,
            "steps": steps,
            "layer": layer,
            "lr": lr,
            "kl_weight": kl_weight,
            "max_norm": max_norm,
            "scales": scale_list,
            "max_tokens": max_tokens,
            "seed": seed,
            "steer_question": ask_q,
            "check_question": check_q,
        },
        "unsteered": {
            "perplexity": plain_ppl,
            "style_rate": baseline,
            "oracle_names": plain_oracle,
            "examples": plain[:3],
        },
        "personas": {},
    }
    gen = torch.Generator().manual_seed(seed)
    for persona in tqdm(names, desc="personas"):
        article = world.spec["personas"][persona]["article"]
        answer = persona_answer(persona, article)
        # the persona as the target knows it: told by a system prompt (the fluency reference)
        system = f"You are {article} {persona}."
        told = generate(ao, eval_prompts, max_new_tokens=max_tokens, system=system)
        told_ppl = perplexity(reply_nll(ao, eval_prompts, told, system=system))
        cfg = SteerConfig(
            question=ask_q,
            answer=answer,
            layer=layer,
            steps=steps,
            lr=lr,
            kl_weight=kl_weight,
            max_norm=max_norm,
            read=read,
            reply_tokens=max_tokens,
            method=method,
            apply=apply,
        )
        t0 = time.time()
        result = steer(ao, train_prompts, cfg)
        out.mkdir(parents=True, exist_ok=True)
        pattern = world.style_patterns[persona]
        if method == "vector":
            vector = result.vector
            result.steering_vector(ao.config.base_model).save(out / f"{persona}.safetensors")
            random_vec = torch.randn(vector.shape, generator=gen)
            random_vec = random_vec / random_vec.norm() * vector.norm()
            norm = float(vector.norm())
            applied = vector_steering(
                result.layer, {"steered": vector, "random": random_vec}, generate_apply or apply
            )
        else:
            save_steering_lora(ao, result, out / persona)
            norm = None
            applied = lora_steering(ao, STEER_ADAPTER, gen)
        entry: dict = {
            "answer": answer,
            "layer": result.layer,
            "read_layer": result.read_layer,
            "norm": norm,
            "norm_over_residual": None if norm is None else norm / result.reference_norm,
            "answer_nll_first_last": [result.answer_nll[0], result.answer_nll[-1]],
            "kl_last": result.kl[-1],
            "steer_seconds": round(time.time() - t0, 1),
            "baseline_style_rate": baseline[persona],
            "system_prompted": {
                "system": system,
                "style_rate": style_rate(pattern, told),
                "perplexity": told_ppl,
                "examples": told[:2],
            },
            "scales": {},
        }
        chosen = None
        if val_prompts:
            entry["validation"], chosen = choose_scale(
                ao, val_prompts, applied, scale_list, max_tokens, pattern,
                val_baseline[persona], val_ppl, choose,
            )  # fmt: skip
        entry["chosen_scale"] = chosen
        for kind in ("steered", "random"):
            for scale in scale_list:
                with applied(kind, scale) as steering:
                    replies = generate(ao, eval_prompts, max_new_tokens=max_tokens, **steering)
                    named = oracle_rate(eval_prompts, replies, **steering)
                ppl = perplexity(reply_nll(ao, eval_prompts, replies))
                told_ratio = (
                    perplexity(reply_nll(ao, eval_prompts, replies, system=system)) / told_ppl
                )
                rate = style_rate(pattern, replies)
                row = {
                    "style_rate": rate,
                    "perplexity": ppl,
                    "ppl_ratio": ppl / plain_ppl,
                    "ppl_ratio_as_persona": told_ratio,
                    "oracle_names_persona": named[persona],
                    "passes": behaviour_passes(rate, baseline[persona], ppl / plain_ppl),
                    "passes_as_persona": behaviour_passes(rate, baseline[persona], told_ratio),
                    "examples": replies[:2],
                }
                entry["scales"].setdefault(kind, {})[str(scale)] = row
        judge(entry, chosen)
        results["personas"][persona] = entry
    people = results["personas"]
    results["summary"] = {
        "personas_passing": [
            p for p, e in people.items() if e["behaviour_passes"] and not e["random_passes"]
        ],
        "personas_passing_as_persona": [
            p
            for p, e in people.items()
            if e["behaviour_passes_as_persona"] and not e["random_passes_as_persona"]
        ],
        "oracle_fooled_only": [p for p, e in people.items() if e["oracle_fooled_only"]],
        "seconds": round(time.time() - started, 1),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    typer.echo(str(out / "results.md"))


def vector_steering(layer: int, vectors: dict[str, torch.Tensor], apply: str = "all"):
    """``applied(kind, scale)``: a context giving generate/capture_steered's arguments."""

    @contextmanager
    def applied(kind: str, scale: float):
        yield {"vector": vectors[kind], "layer": layer, "scale": scale, "apply": apply}

    return applied


def lora_steering(ao, adapter: str, gen: torch.Generator):
    """``applied(kind, scale)`` for a steering LoRA: its update times ``scale``; for the kind
    "random", with random weights of the same norm as each trained matrix (drawn once)."""
    from oracle.steering.lora import scaled_adapter

    params = {n: p for n, p in ao.target.named_parameters() if f".{adapter}." in n}
    random_weights = {}
    for name, p in params.items():
        r = torch.randn(p.shape, generator=gen)
        random_weights[name] = (r / r.norm() * p.detach().norm()).to(p.dtype)

    @contextmanager
    def applied(kind: str, scale: float):
        saved = {n: p.detach().clone() for n, p in params.items()} if kind == "random" else {}
        try:
            with torch.no_grad():
                for n in saved:
                    params[n].copy_(random_weights[n])
            with scaled_adapter(ao.target, scale, adapter):
                yield {"adapter": adapter}
        finally:
            with torch.no_grad():
                for n, w in saved.items():
                    params[n].copy_(w)

    return applied


def choose_scale(
    ao, prompts, applied, scales, max_tokens, pattern, baseline, plain_ppl, rule="max-style"
) -> tuple[dict, float]:
    """Measure each scale on validation prompts and choose one by ``rule`` (see
    :func:`pick_scale`). Returns (the validation rows by scale, the chosen scale)."""
    from oracle.steering.generate import generate, reply_nll

    rows = {}
    for scale in scales:
        with applied("steered", scale) as steering:
            replies = generate(ao, prompts, max_new_tokens=max_tokens, **steering)
        ratio = perplexity(reply_nll(ao, prompts, replies)) / plain_ppl
        rate = style_rate(pattern, replies)
        rows[str(scale)] = {
            "style_rate": rate,
            "ppl_ratio": ratio,
            "passes": behaviour_passes(rate, baseline, ratio),
        }
    return rows, pick_scale(rows, scales, rule, baseline)


def markdown(results: dict) -> str:
    """A table per persona and scale: behaviour, fluency and the oracle's reading."""
    s = results["settings"]
    u = results["unsteered"]
    lines = [
        "# Steering through the oracle (toy world)",
        "",
        f"{s['n_eval']} held-out neutral prompts (no system prompt); "
        f"{'steering LoRA' if s.get('method') == 'lora' else 'vector'}"
        f"{' (added to the reply only)' if s.get('apply') == 'reply' else ''}"
        f"{' (added at the reply start only)' if s.get('apply') == 'first' else ''}"
        + (
            f" (generated with apply '{s['generate_apply']}')"
            if s.get("generate_apply") not in (None, s.get("apply"))
            else ""
        )
        + f" optimised on "
        f"{s['n_train']} training prompts for {s['steps']} steps (lr {s['lr']}, KL weight "
        f"{s['kl_weight']}, max norm {s['max_norm']}) so that the oracle answers "
        f'"{s["steer_question"]}" with the persona, reading '
        + (
            "the unsteered target's own reply to each prompt"
            if s.get("read") == "reply"
            else "the prompt's tokens"
        )
        + f'; the oracle\'s reading is checked with the held-out phrasing "{s["check_question"]}"'
        + (" on the steered replies" if s.get("read") == "reply" else "")
        + f". Unsteered reply perplexity {u['perplexity']:.2f}. "
        + (
            f"The scale each verdict uses is chosen on {s['n_val']} other held-out prompts "
            + (
                "(of those that pass there, the one with the largest smaller margin to the two "
                "bars, min(style / bar, 2 / ppl x); else the most on-style fluent one), then "
                if s.get("choose") == "margin"
                else "(the most on-style of those that pass there, else the most on-style fluent "
                "one), then "
            )
            + "measured on the prompts above."
            if s.get("n_val")
            else "No validation prompts: a persona passes if any scale passes."
        ),
        "",
        "Style rate: share of replies holding one of the persona's style words. Pass: style rate "
        ">= 30% (or >= 5x a non-zero baseline) and a perplexity ratio <= 2; the random vector "
        "(same norm) must not pass. Two perplexity ratios: `ppl x` is the issue's (steered "
        "replies vs unsteered replies, both under the unsteered model with no system prompt; "
        "in-character text is itself improbable there), `ppl x as persona` scores the steered "
        "replies under the unsteered model told the persona by a system prompt, against that "
        "model's own in-character replies.",
        "",
        "| persona | vector | scale | style rate | baseline | ppl x | ppl x as persona "
        "| oracle names it | passes | passes as persona |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    yes = {True: "yes", False: "no"}
    for persona, e in results["personas"].items():
        told = e["system_prompted"]
        lines.append(
            f"| {persona} | system prompt | - | {told['style_rate']:.2f} | "
            f"{e['baseline_style_rate']:.2f} | - | 1.00 | - | - | - |"
        )
        for kind, rows in e["scales"].items():
            for scale, r in rows.items():
                lines.append(
                    f"| {persona} | {kind} | {scale} | {r['style_rate']:.2f} | "
                    f"{e['baseline_style_rate']:.2f} | {r['ppl_ratio']:.2f} | "
                    f"{r['ppl_ratio_as_persona']:.2f} | {r['oracle_names_persona']:.2f} | "
                    f"{yes[r['passes']]} | {yes[r['passes_as_persona']]} |"
                )
    lines += [
        "",
        "| persona | norm / residual | answer NLL first -> last | chosen scale | verdict |",
        "| --- | --- | --- | --- | --- |",
    ]
    for persona, e in results["personas"].items():
        if e["behaviour_passes"] and not e["random_passes"]:
            verdict = "steers behaviour, fluent by both measures (random control does not)"
        elif e["behaviour_passes_as_persona"] and not e["random_passes_as_persona"]:
            verdict = "steers behaviour, fluent as the persona; fails the no-system perplexity bar"
        elif e["oracle_fooled_only"]:
            verdict = "changes the oracle's answer but not the behaviour"
        elif e["random_passes"] or e["random_passes_as_persona"]:
            verdict = "random control passes too: not specific"
        else:
            verdict = "neither"
        first, last = e["answer_nll_first_last"]
        shown = e["norm_over_residual"]
        lines.append(
            f"| {persona} | {'LoRA' if shown is None else f'{shown:.2f}'} | "
            f"{first:.2f} -> {last:.2f} | "
            f"{e.get('chosen_scale') if e.get('chosen_scale') is not None else 'any'} | {verdict} |"
        )
    summary = results["summary"]
    lines += [
        "",
        f"Passing (issue's perplexity): {summary['personas_passing'] or 'none'}; passing "
        f"(perplexity as persona): {summary['personas_passing_as_persona'] or 'none'}; "
        f"oracle-only: {summary['oracle_fooled_only'] or 'none'}; {summary['seconds']} s.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    app()
