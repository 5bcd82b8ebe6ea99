"""Run one suite: the oracle, every baseline and every control, scored by the one function.

Question-free methods (the best constant answer, the text-only reader, the two linear probes)
answer every test item. The oracle answers every item, each in its own wording. Methods that
ask a question of another model, or feed the oracle other activations (black box,
continuation, training-free, the controls), answer one *primary* item per group: a held-out
wording, rotating over the wordings from group to group, so every wording is used equally.

:func:`evaluate_suite` returns a JSON-ready dict: the items, each method's answers and
scores (``None`` where it did not run), the hidden tags and the probes' fits;
:mod:`evals.summary` turns it into figures and a verdict.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from evals import black_box as bb
from evals import calibration, counterfactual, readers
from evals.bootstrap import N_RESAMPLES
from evals.captures import Captures, visible_text
from evals.controls import VECTOR_CONTROLS
from evals.methods import training_free
from evals.scoring import Score, score_answer
from evals.suite_format import SuiteItem
from evals.suites import Suite
from oracle.engines.base import AnswerRequest, Engine

log = logging.getLogger(__name__)

BASELINES = (
    "constant",
    "text_only",
    "probe_text",
    "probe_mean",
    "probe_last",
    "black_box",
    "continuation",
    "training_free",
)
CONTROLS = ("shuffled", "zeros", "noise", "no_system")
# what the oracle's own answers are further asked for (not methods of the table)
CHECKS = ("counterfactual", "calibration")
METHOD_KINDS = {"oracle": "oracle"} | dict.fromkeys(BASELINES, "baseline")
METHOD_KINDS |= dict.fromkeys(CONTROLS, "control")


@dataclass
class EvalConfig:
    """Settings of an evaluation run."""

    seed: int = field(default=0, metadata={"help": "seed of subsampling, controls, bootstrap"})
    n_test: int | None = field(default=None, metadata={"help": "test groups per suite (None: all)"})
    n_train: int | None = field(default=None, metadata={"help": "train items per suite"})
    max_new_tokens: int = field(default=12, metadata={"help": "longest generated answer"})
    batch_size: int = field(default=32, metadata={"help": "rows per forward pass"})
    n_resamples: int = field(default=N_RESAMPLES, metadata={"help": "bootstrap resamples"})
    methods: tuple[str, ...] = field(
        default=("oracle", *BASELINES, *CONTROLS, *CHECKS),
        metadata={"help": "methods to run: oracle, baselines, controls, checks"},
    )
    learning_curve: bool = field(default=True, metadata={"help": "the probe's learning curve"})
    calibration_samples: int = field(
        default=5,
        metadata={"help": "answers sampled per item for the agreement confidence (0 = none)"},
    )
    feature_cache: str | None = field(
        default=None, metadata={"help": "directory caching train features (None: no cache)"}
    )
    show_progress: bool = field(default=False, metadata={"help": "tqdm progress bars"})


def primary_items(items: Sequence[SuiteItem]) -> list[int]:
    """One item index per group: a held-out wording, rotating over the group's wordings."""
    by_group: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        by_group.setdefault(item.key, []).append(i)
    out = []
    for g, idx in enumerate(by_group.values()):
        held = [i for i in idx if "heldout_question" in items[i].tags] or idx
        out.append(held[g % len(held)])
    return sorted(out)


def direction_of(item: SuiteItem) -> str | None:
    """``next`` / ``previous`` for context items (``meta.direction``, or the family's name)."""
    d = item.meta.get("direction")
    if d in ("next", "previous"):
        return d
    return next((d for d in ("next", "previous") if item.family.endswith(d)), None)


def _tokenizer(engine: Engine):
    try:
        return engine.target_tokenizer
    except Exception:  # an engine with no transformers copy: windows shown as token ids
        return None


class _Run:
    """One suite's methods, recorded as per-item answers and scores."""

    def __init__(self, engine: Engine, suite: Suite, cfg: EvalConfig, caps: Captures, span):
        self.engine, self.suite, self.cfg, self.caps, self.span = engine, suite, cfg, caps, span
        self.items = suite.test
        self.layer = caps.layer
        self.yes_no = suite.answer_type == "yes_no"
        self.primary = primary_items(self.items)
        self.methods: dict[str, dict] = {}
        self.checks: dict[str, object] = {}
        self.tok = _tokenizer(engine)
        caps.run(self.items, span)
        got = [caps.get(i, span) for i in self.items]
        self.acts = [c.acts for c in got]
        self.visible = [visible_text(i, c, self.tok) for i, c in zip(self.items, got, strict=True)]

    def score(self, answer: str, i: int, p_yes: float | None = None) -> Score:
        s = self.suite
        return score_answer(answer, self.items[i].label, s.answer_type, s.labels, s.aliases, p_yes)

    def record(self, name: str, idx: Sequence[int], answers: Sequence[str], p_yes=None) -> None:
        n = len(self.items)
        p_yes = list(p_yes) if p_yes is not None else [None] * len(idx)
        scores = {i: self.score(a, i, p) for i, a, p in zip(idx, answers, p_yes, strict=True)}
        answer_of = dict(zip(idx, answers, strict=True))
        self.methods[name] = {
            "kind": METHOD_KINDS[name],
            "answers": [answer_of.get(i) for i in range(n)],
            "correct": [scores[i].correct if i in scores else None for i in range(n)],
            "f1": [scores[i].f1 if i in scores else None for i in range(n)],
            "predicted": [scores[i].predicted if i in scores else None for i in range(n)],
        }
        if self.yes_no:  # P(yes) over yes and no: the yes/no answer's own confidence
            p_of = dict(zip(idx, p_yes, strict=True))
            self.methods[name]["p_yes"] = [p_of.get(i) for i in range(n)]

    def questions(self, idx: Sequence[int]) -> list[str]:
        return [self.items[i].question for i in idx]

    # ------------------------------------------------------------------ methods
    def requests(self, sets: Sequence[torch.Tensor], idx: Sequence[int], **options):
        """One answer request per set, each asking its item's question."""
        return [
            AnswerRequest(a, q, self.layer, self.cfg.max_new_tokens, yes_no=self.yes_no, **options)
            for a, q in zip(sets, self.questions(idx), strict=True)
        ]

    def ask_sets(
        self, sets: Sequence[torch.Tensor], idx: Sequence[int], **options
    ) -> tuple[list[str], list[float | None]]:
        """The oracle's answers (and P(yes)) about ``sets``, each asked item ``idx[k]``'s
        question; ``options``: sampling fields of the request (temperature, seed)."""
        requests = self.requests(sets, idx, **options)
        answers = []
        for start in range(0, len(requests), self.cfg.batch_size):
            answers += self.engine.answer(requests[start : start + self.cfg.batch_size])
        return [a.text for a in answers], [a.p_yes for a in answers]

    def ask(self, name: str, idx: list[int], sets: Sequence[torch.Tensor]) -> None:
        texts, p_yes = self.ask_sets(sets, idx)
        self.record(name, idx, texts, p_yes)

    def counterfactual(self) -> None:
        self.checks["counterfactual"] = counterfactual.ask(self)

    def calibration(self) -> None:
        self.checks["calibration"] = calibration.confidences(self, self.cfg.calibration_samples)

    def oracle(self) -> None:
        self.ask("oracle", list(range(len(self.items))), self.acts)

    def vector_control(self, name: str) -> None:
        sets = VECTOR_CONTROLS[name]([self.acts[i] for i in self.primary], self.cfg.seed)
        self.ask(name, self.primary, sets)

    def no_system(self) -> None:
        """The same input with only its system prompt removed (same user and reply text).

        Not for open answers about the visible text (their label is not in the system
        prompt) nor for spans of absolute token indices (removing the prompt moves them)."""
        if self.suite.answer_type == "text":
            return
        idx = [
            i
            for i in self.primary
            if self.items[i].without_system() is not None
            and not (self.span or self.items[i].read_span or "").startswith("indices:")
        ]
        if not idx:
            return
        plain = [
            SuiteItem(**{**self.items[i].to_dict(), "conversation": self.items[i].without_system()})
            for i in idx
        ]
        self.caps.run(plain, self.span)
        self.ask("no_system", idx, [self.caps.get(p, self.span).acts for p in plain])

    def training_free(self) -> None:
        c, idx = self.cfg, self.primary
        texts, p_yes = training_free(
            self.engine, [self.acts[i] for i in idx], self.questions(idx), self.layer,
            c.max_new_tokens, c.batch_size, self.yes_no,
        )  # fmt: skip
        self.record("training_free", idx, texts, p_yes)

    def black_box(self) -> None:
        c, idx = self.cfg, self.primary
        texts, p_yes = bb.black_box(
            self.engine,
            [self.visible[i] for i in idx],
            self.questions(idx),
            [self.items[i].conversation is not None for i in idx],
            c.max_new_tokens,
            c.batch_size,
            self.yes_no,
        )
        self.record("black_box", idx, texts, p_yes)

    def continuation(self) -> None:
        """For items asking what comes next: the target continues the prefix up to the window."""
        idx = [i for i in self.primary if direction_of(self.items[i]) == "next"]
        if not idx or self.tok is None:
            return
        prefixes, lengths = [], []
        for i in idx:
            cap = self.caps.get(self.items[i], self.span)
            prefixes.append(cap.token_ids[: max(cap.positions) + 1])
            k = self.items[i].meta.get("k")
            lengths.append(int(k) if k else len(self.tok.encode(self.items[i].label)))
        texts = bb.continuation(self.engine, prefixes, lengths, self.cfg.batch_size)
        self.record("continuation", idx, texts)

    def readers(self) -> dict:
        """The text-only reader (and the hidden tags), the linear probes and the probe on the
        conversation without its system prompt (:mod:`evals.readers`)."""
        return readers.run_readers(self)


def _cache_path(cfg: EvalConfig) -> Path | None:
    return Path(cfg.feature_cache) if cfg.feature_cache else None


def evaluate_suite(
    engine: Engine,
    suite: Suite,
    cfg: EvalConfig,
    positions: str | None = None,
    captures: Captures | None = None,
) -> dict:
    """Every method of ``cfg.methods`` on ``suite.test`` (see the module docstring).

    ``positions`` overrides every item's read span (the position ablation); ``captures`` may
    be shared between suites, so that a conversation is captured once.
    """
    start = time.time()
    captures = captures or Captures(
        engine, engine.config.default_layer, cfg.show_progress, _cache_path(cfg)
    )
    run = _Run(engine, suite, cfg, captures, positions)
    wanted = set(cfg.methods)
    steps = [m for m in ("oracle", *VECTOR_CONTROLS, "no_system") if m in wanted]
    if "oracle" in wanted:
        steps += [m for m in CHECKS if m in wanted]
    steps += [m for m in ("training_free", "black_box") if m in wanted]
    if "continuation" in wanted and suite.answer_type == "text":
        steps.append("continuation")
    seconds = {"capture": time.time() - start}
    for name in tqdm(steps, desc=suite.name, disable=not cfg.show_progress):
        t = time.time()
        if name in VECTOR_CONTROLS:
            run.vector_control(name)
        else:
            getattr(run, name)()
        seconds[name] = time.time() - t
        log.info("%s/%s done", suite.name, name)
    t = time.time()
    info = run.readers()
    seconds["text_reader_and_probes"] = time.time() - t
    items = run.items
    return {
        "name": suite.name,
        "answer_type": suite.answer_type,
        "metric": "token_f1" if suite.answer_type == "text" else "accuracy",
        "labels": suite.labels,
        "train_labels": [i.label for i in suite.train],
        "layer": captures.layer,
        "positions": positions,
        "n_train": len(suite.train),
        "items": [
            {
                "id": it.id,
                "group": it.key,
                "question": it.question,
                "label": it.label,
                "gold": it.gold or it.label,
                "tags": it.tags,
                "has_system": it.has_system,
                "visible": run.visible[i][:300],
                "meta": it.meta,
            }
            for i, it in enumerate(items)
        ],
        "primary": run.primary,
        **info,
        "methods": run.methods,
        "checks": run.checks,
        "seconds": seconds,
    }
