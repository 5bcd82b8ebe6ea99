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
from scripts.experiments.steering_toy_report import markdown

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
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("results/steering"),
) -> None:
    """Steer toward each persona and write results.json and results.md to OUT."""
    from tqdm import tqdm

    torch.set_num_threads(threads)
    started = time.time()
    scale_list = [float(s) for s in scales.split(",")]
    names = _check_options(read, method, generate_apply, choose, personas)
    run = _ToyRun(target, oracle, n_train, n_eval, n_val, max_tokens, read, seed)
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
    from training.toy_world.world import World

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


class _ToyRun:
    """The shipped toy world's oracle, its prompts (train, measured, validation) and the
    unsteered target's replies on them: what every persona's steering is measured against."""

    def __init__(self, target, oracle, n_train, n_eval, n_val, max_tokens, read, seed) -> None:
        from oracle.defaults import default_oracle
        from oracle.oracle import ActivationOracle
        from oracle.steering.generate import generate, reply_nll
        from training.toy_world.questions import PERSONA_QUESTIONS
        from training.toy_world.world import World

        self.world = World.load()
        if target is None and oracle is None:
            oracle = default_oracle()
        self.oracle = oracle
        self.ao = ActivationOracle.load(target, str(oracle) if oracle else None, device="cpu")
        self.train_prompts = neutral_prompts(self.world, "train", n_train, seed)
        heldout = neutral_prompts(self.world, "heldout", n_eval + n_val, seed + 1)
        self.eval_prompts, self.val_prompts = heldout[:n_eval], heldout[n_eval:]
        self.ask_q = PERSONA_QUESTIONS["train"][0]
        self.check_q = PERSONA_QUESTIONS["heldout"][0]
        self.read_layer = self.ao.config.default_layer
        self.read, self.max_tokens = read, max_tokens
        personas = self.world.personas
        self.plain = generate(self.ao, self.eval_prompts, max_new_tokens=max_tokens)
        self.plain_ppl = perplexity(reply_nll(self.ao, self.eval_prompts, self.plain))
        self.baseline = {p: style_rate(self.world.style_patterns[p], self.plain) for p in personas}
        self.val_ppl = self.val_baseline = None
        if self.val_prompts:
            val_plain = generate(self.ao, self.val_prompts, max_new_tokens=max_tokens)
            self.val_ppl = perplexity(reply_nll(self.ao, self.val_prompts, val_plain))
            self.val_baseline = {
                p: style_rate(self.world.style_patterns[p], val_plain) for p in personas
            }
        self.applied = None  # the steering of the persona being measured (steer_persona)

    def unsteered(self) -> dict:
        return {
            "perplexity": self.plain_ppl,
            "style_rate": self.baseline,
            "oracle_names": self.oracle_rate(self.eval_prompts, self.plain),
            "examples": self.plain[:3],
        }

    def answer(self, persona: str) -> str:
        from training.toy_world.questions import persona_answer

        return persona_answer(persona, self.world.spec["personas"][persona]["article"])

    def oracle_rate(self, prompts, replies, **steering) -> dict[str, float]:
        """Share of prompts about which the oracle names each persona, reading what it was
        steered on: the steered replies (read='reply') or the prompts. ``steering``: what
        :func:`applied` yields."""
        from oracle.steering.generate import capture_steered, conversations
        from training.toy_world.questions import parse_persona

        ao, layer = self.ao, self.read_layer
        if self.read == "reply":
            convs = conversations(prompts, replies)
            acts = capture_steered(ao, convs, layer, positions="role:assistant", **steering)
        else:
            acts = capture_steered(ao, prompts, layer, **steering)
        answers = ao.answer(acts, [self.check_q] * len(acts), layer, max_new_tokens=8)
        named = [parse_persona(a, self.world.personas) for a in answers]
        return {p: sum(n == p for n in named) / max(1, len(named)) for p in self.world.personas}

    def steer_persona(self, persona: str, cfg, generate_apply: str, gen, out: Path) -> dict:
        """Optimise ``persona``'s steering (saved to ``out``), set :attr:`applied` to it and
        its random control, and return its entry so far (the told persona as reference)."""
        from oracle.steering import steer
        from oracle.steering.generate import generate, reply_nll
        from oracle.steering.lora import STEER_ADAPTER, save_steering_lora

        ao, prompts = self.ao, self.eval_prompts
        article = self.world.spec["personas"][persona]["article"]
        # the persona as the target knows it: told by a system prompt (the fluency reference)
        system = f"You are {article} {persona}."
        told = generate(ao, prompts, max_new_tokens=self.max_tokens, system=system)
        told_ppl = perplexity(reply_nll(ao, prompts, told, system=system))
        t0 = time.time()
        result = steer(ao, self.train_prompts, cfg)
        out.mkdir(parents=True, exist_ok=True)
        if cfg.method == "vector":
            vector = result.vector
            result.steering_vector(ao.config.base_model).save(out / f"{persona}.safetensors")
            random_vec = torch.randn(vector.shape, generator=gen)
            random_vec = random_vec / random_vec.norm() * vector.norm()
            norm = float(vector.norm())
            self.applied = vector_steering(
                result.layer, {"steered": vector, "random": random_vec}, generate_apply
            )
        else:
            save_steering_lora(ao, result, out / persona)
            norm = None
            self.applied = lora_steering(ao, STEER_ADAPTER, gen)
        return {
            "answer": cfg.answer,
            "layer": result.layer,
            "read_layer": result.read_layer,
            "norm": norm,
            "norm_over_residual": None if norm is None else norm / result.reference_norm,
            "answer_nll_first_last": [result.answer_nll[0], result.answer_nll[-1]],
            "kl_last": result.kl[-1],
            "steer_seconds": round(time.time() - t0, 1),
            "baseline_style_rate": self.baseline[persona],
            "system_prompted": {
                "system": system,
                "style_rate": style_rate(self.world.style_patterns[persona], told),
                "perplexity": told_ppl,
                "examples": told[:2],
            },
            "scales": {},
        }

    def measure(self, persona: str, kind: str, scale: float, told: dict) -> dict:
        """The ``kind`` ('steered' or 'random') steering at ``scale`` on the measured prompts:
        style, fluency (against the target as it is and as the persona it is told to be) and
        whether the oracle names the persona."""
        from oracle.steering.generate import generate, reply_nll

        ao, prompts = self.ao, self.eval_prompts
        with self.applied(kind, scale) as steering:
            replies = generate(ao, prompts, max_new_tokens=self.max_tokens, **steering)
            named = self.oracle_rate(prompts, replies, **steering)
        ppl = perplexity(reply_nll(ao, prompts, replies))
        told_ratio = (
            perplexity(reply_nll(ao, prompts, replies, system=told["system"])) / told["perplexity"]
        )
        rate = style_rate(self.world.style_patterns[persona], replies)
        base = self.baseline[persona]
        return {
            "style_rate": rate,
            "perplexity": ppl,
            "ppl_ratio": ppl / self.plain_ppl,
            "ppl_ratio_as_persona": told_ratio,
            "oracle_names_persona": named[persona],
            "passes": behaviour_passes(rate, base, ppl / self.plain_ppl),
            "passes_as_persona": behaviour_passes(rate, base, told_ratio),
            "examples": replies[:2],
        }


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


if __name__ == "__main__":
    app()
