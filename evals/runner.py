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

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from evals import black_box as bb
from evals.bootstrap import N_RESAMPLES
from evals.controls import VECTOR_CONTROLS
from evals.methods import ask_oracle, training_free
from evals.probe import curve_sizes, fit_probe, pooled
from evals.scoring import Score, score_answer
from evals.suite_format import Suite, SuiteItem
from evals.text_reader import tag_hidden
from oracle.engines.base import CaptureRequest, Engine
from oracle.inputs import TargetInput

log = logging.getLogger(__name__)

BASELINES = (
    "constant",
    "text_only",
    "probe_mean",
    "probe_last",
    "black_box",
    "continuation",
    "training_free",
)
CONTROLS = ("shuffled", "zeros", "noise", "no_system")
METHOD_KINDS = {"oracle": "oracle"} | dict.fromkeys(BASELINES, "baseline")
METHOD_KINDS |= dict.fromkeys(CONTROLS, "control")
CAPTURE_CHUNK = 256


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
        default=("oracle", *BASELINES, *CONTROLS),
        metadata={"help": "methods to run: oracle, baselines, controls"},
    )
    learning_curve: bool = field(default=True, metadata={"help": "the probe's learning curve"})
    feature_cache: str | None = field(
        default=None, metadata={"help": "directory caching train features (None: no cache)"}
    )
    show_progress: bool = field(default=False, metadata={"help": "tqdm progress bars"})


def target_input(item: SuiteItem, conversation: list[dict[str, str]] | None = None) -> TargetInput:
    """What the target reads for ``item`` (or for ``conversation`` in its place)."""
    if item.text is not None and conversation is None:
        return TargetInput(prompt=item.text)
    return TargetInput(
        messages=conversation or item.conversation,
        add_generation_prompt=item.add_generation_prompt,
    )


def input_key(item: SuiteItem, span: str | None) -> str:
    """Items with equal keys read the same activations."""
    return json.dumps([item.conversation, item.text, item.add_generation_prompt, span])


@dataclass
class Captured:
    acts: torch.Tensor | None  # (n_positions, D); None for train items (pooled only)
    token_ids: list[int]
    positions: list[int]
    pooled: tuple[np.ndarray, np.ndarray]  # (mean, last), each (D,)


def feature_cache_dir() -> Path:
    """``$ORACLE_CACHE_DIR/eval-features``, else ``~/.cache/activation-oracle/eval-features``."""
    root = os.environ.get("ORACLE_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "activation-oracle"
    return base / "eval-features"


class Captures:
    """Captures at one layer, each target input captured once and shared between suites.

    Test items keep their activation sets; train items (there may be tens of thousands) keep
    only their pooled features and the tokens of their read span. With ``cache_dir``, train
    features are also saved there in chunks (``.npz``, keyed by the target's fingerprint,
    the layer and the chunk's inputs), so that a long run resumes and a rerun of the report
    captures nothing again.
    """

    def __init__(
        self, engine: Engine, layer: int, progress: bool = False, cache_dir: Path | None = None
    ) -> None:
        self.engine, self.layer, self.progress = engine, layer, progress
        self.done: dict[str, Captured] = {}
        self.cache_dir = cache_dir
        cfg = engine.config
        ident = [cfg.base_model, cfg.fingerprint, engine.target_name, layer]
        self.prefix = json.dumps(ident, sort_keys=True, default=str)

    def get(self, item: SuiteItem, span: str | None = None) -> Captured:
        return self.done[input_key(item, span or item.read_span)]

    def _capture(self, todo: dict[str, SuiteItem], keys: list[str], span, keep: bool) -> None:
        requests = [
            CaptureRequest(target_input(todo[k]), [self.layer], span or todo[k].read_span)
            for k in keys
        ]
        for k, cap in zip(keys, self.engine.capture(requests), strict=True):
            a = cap.activations[0]
            if keep:
                self.done[k] = Captured(a, cap.token_ids, cap.positions, pooled(a))
            else:  # only the read span's own tokens are kept
                window = [cap.token_ids[p] for p in cap.positions]
                self.done[k] = Captured(None, window, list(range(len(window))), pooled(a))

    def _cached(self, todo: dict[str, SuiteItem], keys: list[str], span) -> None:
        digest = hashlib.sha256("\n".join([self.prefix, *keys]).encode()).hexdigest()[:32]
        path = self.cache_dir / f"{digest}.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as z:
                mean, last, ids, ends = z["mean"], z["last"], z["window_ids"], z["window_ends"]
            starts = np.concatenate([[0], ends[:-1]])
            for i, k in enumerate(keys):
                window = ids[starts[i] : ends[i]].tolist()
                self.done[k] = Captured(None, window, list(range(len(window))), (mean[i], last[i]))
            return
        self._capture(todo, keys, span, keep=False)
        got = [self.done[k] for k in keys]
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(
            tmp,
            mean=np.stack([c.pooled[0] for c in got]),
            last=np.stack([c.pooled[1] for c in got]),
            window_ids=np.asarray([t for c in got for t in c.token_ids], dtype=np.int64),
            window_ends=np.cumsum([len(c.token_ids) for c in got]).astype(np.int64),
        )
        tmp.replace(path)

    def run(self, items: Sequence[SuiteItem], span: str | None = None, keep: bool = True) -> None:
        """Capture every item not captured yet (``keep``: keep the activation sets)."""
        todo: dict[str, SuiteItem] = {}
        for item in items:
            key = input_key(item, span or item.read_span)
            have = self.done.get(key)
            if key not in todo and (have is None or (keep and have.acts is None)):
                todo[key] = item
        keys = list(todo)
        chunks = range(0, len(keys), CAPTURE_CHUNK)
        for s in tqdm(chunks, desc="capture", disable=not self.progress or len(chunks) < 2):
            chunk = keys[s : s + CAPTURE_CHUNK]
            if keep or self.cache_dir is None:
                self._capture(todo, chunk, span, keep)
            else:
                self._cached(todo, chunk, span)


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


def _visible(item: SuiteItem, cap: Captured, tokenizer) -> str:
    """What a reader without the activations sees (see ``SuiteItem.visible_text``)."""
    if item.visible_text is not None or item.answer_type != "text":
        return item.transcript()
    window = [cap.token_ids[p] for p in cap.positions]
    return tokenizer.decode(window) if tokenizer is not None else " ".join(map(str, window))


def _tokenizer(engine: Engine):
    try:
        return engine.transformers_oracle().tokenizer
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
        self.tok = _tokenizer(engine)
        caps.run(self.items, span)
        got = [caps.get(i, span) for i in self.items]
        self.acts = [c.acts for c in got]
        self.visible = [_visible(i, c, self.tok) for i, c in zip(self.items, got, strict=True)]

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

    def questions(self, idx: Sequence[int]) -> list[str]:
        return [self.items[i].question for i in idx]

    # ------------------------------------------------------------------ methods
    def ask(self, name: str, idx: list[int], sets: Sequence[torch.Tensor]) -> None:
        c = self.cfg
        texts, p_yes = ask_oracle(
            self.engine, sets, self.questions(idx), self.layer, c.max_new_tokens, c.batch_size,
            self.yes_no,
        )  # fmt: skip
        self.record(name, idx, texts, p_yes)

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
        """The text-only reader (and the hidden tags) and the two linear probes."""
        suite, train, cfg = self.suite, self.suite.train, self.cfg
        need_probe = bool({"probe_mean", "probe_last"} & set(cfg.methods))
        if train and (need_probe or suite.answer_type == "text"):
            self.caps.run(train, keep=False)
        train_visible = [
            _visible(i, self.caps.get(i), self.tok) if i.answer_type == "text" else i.transcript()
            for i in train
        ]
        every = list(range(len(self.items)))
        tags = tag_hidden(
            suite.answer_type,
            self.visible,
            [i.label for i in self.items],
            [i.key for i in self.items],
            lambda pred, i: self.score(pred, i).correct == 1.0,
            train_visible,
            [i.label for i in train],
            suite.aliases,
            suite.label_words,
            cfg.seed,
        )
        self.record("text_only", every, tags.predictions)
        info: dict = {"text_reader": tags.fitted_on, "hidden": tags.hidden}
        info["hidden_reasons"] = tags.reasons
        if not (train and need_probe):
            return info
        feats = np.stack([np.stack(self.caps.get(i).pooled) for i in train])  # (N, 2, D)
        test = np.stack([np.stack(pooled(a)) for a in self.acts])  # (M, 2, D)
        info["probe"] = {}
        for v, name in enumerate(("probe_mean", "probe_last")):
            if name not in cfg.methods:
                continue

            def curve_score(preds: list[str]) -> float:
                return float(np.mean([self.score(p, i).f1 for i, p in enumerate(preds)]))

            fit = fit_probe(
                suite.answer_type,
                feats[:, v],
                [i.label for i in train],
                test[:, v],
                cfg.seed,
                curve_score if cfg.learning_curve and v == 0 else None,
                curve_sizes(len(train)),
            )
            self.record(name, every, fit.predictions)
            info["probe"][name] = {
                "C": fit.C,
                "cv_scores": {str(k): s for k, s in fit.cv_scores.items()},
                "n_train": fit.n_train,
                "n_classes": fit.n_classes,
                "curve": fit.curve,
            }
        return info


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
        "seconds": seconds,
    }
