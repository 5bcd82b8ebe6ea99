"""How a steering vector is to be used: the apply mode and scale, chosen on validation prompts.

A vector is optimised with one apply mode at scale 1, but the steering that works at
generation is often another (the reply's start alone, ``first``, at a larger scale). So after
the optimisation, every (mode, scale) of a grid generates greedy replies to validation prompts
(never the prompts the vector was optimised on), and the choice is

    the largest effect among the settings whose replies stay fluent: perplexity under the
    unsteered target at most ``max_ppl_ratio`` (2) times that of the unsteered replies,

ties to the smaller scale. The effect is measured by a function of the run:

- through the oracle (:func:`oracle_effect`): the oracle's log-probability of the steering
  answer to the steering question, reading the steered reply as the target reads it;
- for contrastive activation addition (:func:`persona_effect`): how much likelier the persona
  prompt makes the steered reply (its log-likelihood with the persona's system prompt minus
  without, per token) under the unsteered target.

The choice (and the whole grid) is saved with the vector, and ``oracle generate --steer``,
``POST /v1/generate`` and chat's ``steer`` use it unless told otherwise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from oracle.errors import OracleInputError
from oracle.oracle import ActivationOracle
from oracle.steering.generate import generate
from oracle.steering.measure import capture_steered, conversations, reply_nll

log = logging.getLogger(__name__)

SCALES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
MODES = ("first", "reply", "all")
MAX_PPL_RATIO = 2.0
Effect = Callable[[Sequence[str], Sequence[str]], float]


@dataclass
class Candidate:
    apply: str
    scale: float
    effect: float
    ppl_ratio: float
    fluent: bool
    sample: str = ""


@dataclass
class UseChoice:
    """The chosen (apply, scale), the unsteered baseline and every candidate tried."""

    apply: str
    scale: float
    effect: float
    ppl_ratio: float
    base_effect: float
    found_fluent: bool
    max_ppl_ratio: float = MAX_PPL_RATIO
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")


def oracle_effect(ao: ActivationOracle, question: str, answer: str, read_layer: int) -> Effect:
    """Mean log P(``answer`` | the oracle reading each reply, ``question``)."""

    def effect(prompts: Sequence[str], replies: Sequence[str]) -> float:
        convs = conversations(prompts, replies)
        if not convs:
            return float("-inf")
        acts = capture_steered(ao, convs, read_layer, positions="role:assistant")
        logps = ao.answer_logprobs(acts, [question] * len(acts), [answer] * len(acts), read_layer)
        return _mean(logps)

    return effect


def persona_effect(ao: ActivationOracle, persona_prompt: str) -> Effect:
    """Mean over replies of the per-token log-likelihood gain that ``persona_prompt`` (as the
    system prompt) gives the reply under the unsteered target."""

    def effect(prompts: Sequence[str], replies: Sequence[str]) -> float:
        keep = [(p, r) for p, r in zip(prompts, replies, strict=True) if r.strip()]
        if not keep:
            return float("-inf")
        ps, rs = [p for p, _ in keep], [r for _, r in keep]
        with_persona = reply_nll(ao, ps, rs, system=persona_prompt)
        without = reply_nll(ao, ps, rs)
        return _mean([b - a for a, b in zip(with_persona, without, strict=True)])

    return effect


class UseChooser:
    """:func:`choose_use` one candidate per :meth:`step` (the unsteered baseline first), so
    that a server can run other work between them.

    >>> chooser = UseChooser(ao, vector, layer, prompts, effect)
    >>> while not chooser.finished:
    ...     chooser.step()
    >>> chooser.result()
    """

    def __init__(
        self,
        ao: ActivationOracle,
        vector: torch.Tensor,
        layer: int,
        prompts: Sequence[str],
        effect: Effect,
        modes: Sequence[str] = MODES,
        scales: Sequence[float] = SCALES,
        max_ppl_ratio: float = MAX_PPL_RATIO,
        max_new_tokens: int = 32,
    ) -> None:
        if not prompts:
            raise OracleInputError("choosing how to use a vector needs validation prompts")
        self.ao, self.vector, self.layer, self.prompts = ao, vector, layer, list(prompts)
        self.effect, self.max_ppl_ratio, self.max_new_tokens = effect, max_ppl_ratio, max_new_tokens
        self.todo = [(m, s) for m in modes for s in scales]
        self.candidates: list[Candidate] = []
        self.base_nll: float | None = None
        self.base_effect = float("nan")

    @property
    def finished(self) -> bool:
        return self.base_nll is not None and not self.todo

    @property
    def steps(self) -> int:
        return len(self.todo) + len(self.candidates) + 1

    def step(self) -> str:
        """The unsteered baseline, then the next candidate; returns a line saying what it got."""
        ao, prompts = self.ao, self.prompts
        if self.base_nll is None:
            base = generate(ao, prompts, max_new_tokens=self.max_new_tokens)
            self.base_nll = _mean(reply_nll(ao, prompts, base))
            self.base_effect = self.effect(prompts, base)
            return f"unsteered: effect {self.base_effect:.3f}"
        mode, scale = self.todo.pop(0)
        try:
            replies = generate(
                ao, prompts, self.vector, self.layer, scale,
                max_new_tokens=self.max_new_tokens, apply=mode,
            )  # fmt: skip
        except OracleInputError:  # the numbers overflowed: not a usable setting
            self.candidates.append(Candidate(mode, scale, float("-inf"), float("inf"), False))
            return f"{mode} x{scale}: overflow"
        ratio = math.exp(_mean(reply_nll(ao, prompts, replies)) - self.base_nll)
        fluent = ratio <= self.max_ppl_ratio and any(r.strip() for r in replies)
        got = Candidate(mode, scale, self.effect(prompts, replies), ratio, fluent, replies[0][:200])
        self.candidates.append(got)
        return f"{mode} x{scale}: effect {got.effect:.3f}, perplexity x{ratio:.2f}"

    def result(self) -> UseChoice:
        """The largest effect among the fluent candidates (ties: the smaller scale); with none
        fluent, the gentlest setting (logged)."""
        fluent = [c for c in self.candidates if c.fluent]
        if fluent:
            best = max(fluent, key=lambda c: (c.effect, -c.scale))
        else:
            best = min(self.candidates, key=lambda c: (c.scale, -c.effect))
            log.warning("no (mode, scale) kept the replies fluent; the gentlest one is saved")
        return UseChoice(
            best.apply, best.scale, best.effect, best.ppl_ratio, self.base_effect,
            bool(fluent), self.max_ppl_ratio, list(self.candidates),
        )  # fmt: skip


def choose_use(
    ao: ActivationOracle,
    vector: torch.Tensor,
    layer: int,
    prompts: Sequence[str],
    effect: Effect,
    modes: Sequence[str] = MODES,
    scales: Sequence[float] = SCALES,
    max_ppl_ratio: float = MAX_PPL_RATIO,
    max_new_tokens: int = 32,
    progress: Callable[[str], None] | None = None,
) -> UseChoice:
    """Try every (mode, scale) on ``prompts`` and choose as the module docstring says."""
    chooser = UseChooser(
        ao, vector, layer, prompts, effect, modes, scales, max_ppl_ratio, max_new_tokens
    )
    while not chooser.finished:
        line = chooser.step()
        if progress is not None:
            progress(line)
    return chooser.result()


def split_validation(prompts: Sequence[str], given: Sequence[str] | None) -> tuple[list, list]:
    """(optimisation prompts, validation prompts): ``given`` validation prompts, else the last
    quarter of ``prompts`` (at least 2; the rest optimise), else, with fewer than 4 prompts,
    the same prompts for both (said in the log)."""
    prompts = list(prompts)
    if given:
        return prompts, list(given)
    if len(prompts) >= 4:
        k = max(2, len(prompts) // 4)
        return prompts[:-k], prompts[-k:]
    log.warning("fewer than 4 prompts: the scale is chosen on the optimisation prompts")
    return prompts, prompts
