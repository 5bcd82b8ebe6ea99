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
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from evals.steering_rules import CHOICES, judge
from scripts.experiments.steering_toy_report import markdown
from scripts.experiments.steering_toy_run import ToyRun, choose_scale

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def _shown(path) -> str | None:
    """A path as the results show it: relative to the repository when inside it."""
    if path is None:
        return None
    from oracle.defaults import REPO_ROOT

    resolved = Path(path).resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(path)


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
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("results/steering"),
) -> None:
    """Steer toward each persona and write results.json and results.md to OUT."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    started = time.time()
    scale_list = [float(s) for s in scales.split(",")]
    names = _check_options(read, method, generate_apply, choose, personas)
    run = ToyRun(target, oracle, n_train, n_eval, n_val, max_tokens, read, seed)
    results: dict = {
        "settings": {
            "target": target,
            "oracle": _shown(run.oracle),
            "n_train": len(run.train_prompts),
            "n_eval": len(run.eval_prompts),
            "n_val": len(run.val_prompts),
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
            "steer_question": run.ask_q,
            "check_question": run.check_q,
        },
        "unsteered": run.unsteered(),
        "personas": {},
    }
    from oracle.steering import SteerConfig

    gen = torch.Generator().manual_seed(seed)
    for persona in tqdm(names, desc="personas"):
        cfg = SteerConfig(
            question=run.ask_q,
            answer=run.answer(persona),
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
        entry = run.steer_persona(persona, cfg, generate_apply or apply, gen, out)
        chosen = None
        if run.val_prompts:
            entry["validation"], chosen = choose_scale(
                run.ao, run.val_prompts, run.applied, scale_list, max_tokens,
                run.world.style_patterns[persona], run.val_baseline[persona], run.val_ppl, choose,
            )  # fmt: skip
        entry["chosen_scale"] = chosen
        for kind in ("steered", "random"):
            for scale in scale_list:
                row = run.measure(persona, kind, scale, entry["system_prompted"])
                entry["scales"].setdefault(kind, {})[str(scale)] = row
        judge(entry, chosen)
        results["personas"][persona] = entry
    results["summary"] = _summary(results["personas"], started)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "results.md").write_text(markdown(results))
    typer.echo(str(out / "results.md"))


def _check_options(
    read: str, method: str, generate_apply: str | None, choose: str, personas: str
) -> list[str]:
    """Refuse unknown options before any work; returns the personas asked for."""
    from oracle.steering import METHODS, READS
    from oracle.steering.apply import APPLIES
    from worlds.toy.world import World

    if read not in READS:
        raise typer.BadParameter(f"--read must be one of {READS}")
    if method not in METHODS:
        raise typer.BadParameter(f"--method must be one of {METHODS}")
    world = World.load()
    names = [p.strip() for p in personas.split(",") if p.strip()]
    unknown = [p for p in names if p not in world.personas]
    if unknown:
        raise typer.BadParameter(f"unknown personas {unknown}; the toy world has {world.personas}")
    if generate_apply is not None and generate_apply not in APPLIES:
        raise typer.BadParameter(f"unknown --generate-apply {generate_apply!r}; one of {APPLIES}")
    if choose not in CHOICES:
        raise typer.BadParameter(f"unknown --choose {choose!r}; expected one of {CHOICES}")
    return names


def _summary(people: dict, started: float) -> dict:
    """The personas whose steering passes (and whose random control does not), as the target
    is and as the persona it is told to be, and those that fool only the oracle."""
    return {
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


if __name__ == "__main__":
    app()
