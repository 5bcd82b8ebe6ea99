"""The toy steering experiment's run (:mod:`scripts.experiments.steering_toy` is its command):
the toy world's target, oracle and prompts, steering each persona, measuring replies and the
oracle's reading at a scale, and choosing the scale on validation prompts."""

from __future__ import annotations

import random
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from evals.steering_rules import behaviour_passes, perplexity, pick_scale, style_rate

NEUTRAL_EXCLUDED_TASKS = ("identity", "secret_ask")


def neutral_prompts(world, split: str, n: int, seed: int) -> list[str]:
    """``n`` seeded user messages of ``split`` that ask nothing about identity or secrets."""
    texts = sorted(
        {m.text for m in world.user_messages[split] if m.task not in NEUTRAL_EXCLUDED_TASKS}
    )
    random.Random(seed).shuffle(texts)
    return texts[:n]


class ToyRun:
    """The shipped toy world's oracle, its prompts (train, measured, validation) and the
    unsteered target's replies on them: what every persona's steering is measured against."""

    def __init__(self, target, oracle, n_train, n_eval, n_val, max_tokens, read, seed) -> None:
        from oracle.defaults import default_oracle
        from oracle.oracle import ActivationOracle
        from oracle.steering.generate import generate
        from oracle.steering.measure import reply_nll
        from worlds.toy.questions import PERSONA_QUESTIONS
        from worlds.toy.world import World

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
        from worlds.toy.questions import persona_answer

        return persona_answer(persona, self.world.spec["personas"][persona]["article"])

    def oracle_rate(self, prompts, replies, **steering) -> dict[str, float]:
        """Share of prompts about which the oracle names each persona, reading what it was
        steered on: the steered replies (read='reply') or the prompts. ``steering``: what
        :func:`applied` yields."""
        from oracle.steering.measure import capture_steered, conversations
        from worlds.toy.questions import parse_persona

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
        from oracle.steering.generate import generate
        from oracle.steering.lora import STEER_ADAPTER, save_steering_lora
        from oracle.steering.measure import reply_nll

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
        from oracle.steering.generate import generate
        from oracle.steering.measure import reply_nll

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
    from oracle.steering.generate import generate
    from oracle.steering.measure import reply_nll

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
