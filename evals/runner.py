"""Run one suite: the oracle, each baseline and each control on the same test items.

Every method yields one predicted label (or None) per test item; an item scores 1 when the
prediction equals its label. Figures are means with a percentile bootstrap interval
(:mod:`evals.bootstrap`), overall and per held-out split.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from evals.baselines import black_box, hf_oracle_of, training_free
from evals.bootstrap import N_RESAMPLES, bootstrap_ci
from evals.controls import CONTROL_NAMES, VECTOR_CONTROLS
from evals.items import Suite
from evals.probe import LinearProbe, mean_pool
from evals.scoring import chance_rates, label_of
from oracle.engines.base import AnswerRequest, CaptureRequest, Engine

log = logging.getLogger(__name__)

BASELINE_NAMES = ("linear_probe", "black_box", "training_free")
METHOD_KINDS = {"oracle": "oracle"} | dict.fromkeys(BASELINE_NAMES, "baseline")
METHOD_KINDS |= dict.fromkeys(CONTROL_NAMES, "control")


@dataclass
class EvalConfig:
    """Settings of an evaluation run."""

    seed: int = field(default=0, metadata={"help": "seed of subsampling, controls, bootstrap"})
    n_test: int | None = field(default=None, metadata={"help": "test items per suite (None: all)"})
    n_train: int | None = field(default=None, metadata={"help": "probe training items per suite"})
    max_new_tokens: int = field(default=12, metadata={"help": "longest generated answer"})
    batch_size: int = field(default=16, metadata={"help": "rows per forward pass"})
    n_resamples: int = field(default=N_RESAMPLES, metadata={"help": "bootstrap resamples"})
    methods: tuple[str, ...] = field(
        default=("oracle", *BASELINE_NAMES, *CONTROL_NAMES),
        metadata={"help": "methods to run: oracle, baselines, controls"},
    )
    show_progress: bool = field(default=False, metadata={"help": "tqdm progress bars"})


def summarise(correct: Sequence[float], splits: Sequence[str], cfg: EvalConfig) -> dict:
    """Overall and per-split estimates of 0/1 scores (n,), each ``{value, lo, hi, n}``."""
    out = {"all": bootstrap_ci(correct, cfg.n_resamples, cfg.seed).to_dict(), "by_split": {}}
    for split in sorted(set(splits)):
        sub = [c for c, s in zip(correct, splits, strict=True) if s == split]
        out["by_split"][split] = bootstrap_ci(sub, cfg.n_resamples, cfg.seed).to_dict()
    return out


def _ask(
    engine: Engine, acts: Sequence[torch.Tensor], question: str, layer: int, cfg: EvalConfig
) -> list[str]:
    requests = [AnswerRequest(a, question, layer, cfg.max_new_tokens) for a in acts]
    texts: list[str] = []
    for start in range(0, len(requests), cfg.batch_size):
        texts += [a.text for a in engine.answer(requests[start : start + cfg.batch_size])]
    return texts


def capture_acts(
    engine: Engine,
    conversations: Sequence[list[dict[str, str]]],
    layer: int,
    positions: str | None,
) -> list[torch.Tensor]:
    """Activation sets (n_i, D) of each conversation at ``layer``."""
    from oracle.inputs import TargetInput

    caps = engine.capture(
        [CaptureRequest(TargetInput(messages=m), [layer], positions) for m in conversations]
    )
    return [c.activations[0] for c in caps]


def evaluate_suite(
    engine: Engine,
    suite: Suite,
    cfg: EvalConfig,
    layer: int | None = None,
    positions: str | None = None,
) -> dict:
    """Every method of ``cfg.methods`` on ``suite.test``; returns a JSON-ready dict.

    Keys: ``question``, ``labels``, ``n_test``, ``chance``, ``majority``, ``layer``,
    ``positions``, ``methods`` ({name: {kind, all, by_split, predictions, answers}}).
    """
    layer = engine.config.default_layer if layer is None else layer
    positions = positions or engine.config.positions
    test = suite.test
    truth = [item.label for item in test]
    splits = [item.split for item in test]
    chance, majority = chance_rates(truth, len(suite.labels))
    q = suite.question

    def score(texts: list[str]) -> list[str | None]:
        return [label_of(t, suite.labels, suite.aliases) for t in texts]

    acts = capture_acts(engine, [i.messages for i in test], layer, positions)
    runners: dict[str, Callable[[], tuple[list[str | None], list[str]]]] = {}

    def by_text(fn: Callable[[], list[str]]) -> Callable[[], tuple[list[str | None], list[str]]]:
        def run() -> tuple[list[str | None], list[str]]:
            texts = fn()
            return score(texts), texts

        return run

    runners["oracle"] = by_text(lambda: _ask(engine, acts, q, layer, cfg))
    for name, fn in VECTOR_CONTROLS.items():
        runners[name] = by_text(
            lambda fn=fn: _ask(engine, fn(acts, cfg.seed), q, layer, cfg)  # type: ignore[misc]
        )
    runners["no_system"] = by_text(
        lambda: _ask(
            engine,
            capture_acts(engine, [i.without_system() for i in test], layer, positions),
            q,
            layer,
            cfg,
        )
    )
    runners["black_box"] = by_text(
        lambda: black_box(
            hf_oracle_of(engine), [i.messages for i in test], q, cfg.max_new_tokens, cfg.batch_size
        )
    )
    runners["training_free"] = by_text(
        lambda: training_free(
            hf_oracle_of(engine), acts, q, layer, cfg.max_new_tokens, cfg.batch_size
        )
    )

    def probe() -> tuple[list[str | None], list[str]]:
        if not suite.train:
            raise ValueError("the suite has no train items for the probe")
        train_acts = capture_acts(engine, [i.messages for i in suite.train], layer, positions)
        model = LinearProbe(suite.labels, seed=cfg.seed)
        model.fit(mean_pool(train_acts), [i.label for i in suite.train])
        preds = model.predict(mean_pool(acts))
        return list(preds), list(preds)

    runners["linear_probe"] = probe
    methods: dict[str, dict] = {}
    if not suite.hidden_in_system:  # the label is in the user's turn: not a control here
        runners.pop("no_system")
    wanted = [m for m in cfg.methods if m in runners]
    for name in tqdm(wanted, desc=f"{suite.name}", disable=not cfg.show_progress):
        preds, texts = runners[name]()
        correct = [float(p == t) for p, t in zip(preds, truth, strict=True)]
        methods[name] = {
            "kind": METHOD_KINDS[name],
            **summarise(correct, splits, cfg),
            "predictions": preds,
            "answers": texts,
            "correct": correct,
        }
        log.info("%s/%s: %s", suite.name, name, methods[name]["all"])
    return {
        "question": q,
        "labels": suite.labels,
        "n_test": len(test),
        "n_train": len(suite.train),
        "truth": truth,
        "splits": splits,
        "chance": chance,
        "majority": majority,
        "layer": layer,
        "positions": positions,
        "methods": methods,
        "oracle_minus": oracle_minus(methods, cfg),
        "flags": flags_of(methods, majority),
    }


def oracle_minus(methods: dict[str, dict], cfg: EvalConfig) -> dict[str, dict]:
    """Paired differences: oracle accuracy minus each other method's, on the same items.

    The bootstrap resamples items, so the interval of a difference accounts for the pairing.
    """
    if "oracle" not in methods:
        return {}
    ref = methods["oracle"]["correct"]
    return {
        name: bootstrap_ci(
            [a - b for a, b in zip(ref, m["correct"], strict=True)], cfg.n_resamples, cfg.seed
        ).to_dict()
        for name, m in methods.items()
        if name != "oracle"
    }


def flags_of(methods: dict[str, dict], majority: float) -> list[str]:
    """Plain-language warnings: a control that did not fail, an oracle not above the majority."""
    flags = []
    for name, m in methods.items():
        est = m["all"]
        if m["kind"] == "control" and est["lo"] > majority:
            flags.append(
                f"control '{name}' did NOT fail: {est['value']:.3f} [{est['lo']:.3f}, "
                f"{est['hi']:.3f}] is above the majority-class rate {majority:.3f}"
            )
    oracle = methods.get("oracle")
    if oracle is not None and not oracle["all"]["lo"] > majority:
        flags.append(
            f"the oracle is not clearly above the majority-class rate {majority:.3f} "
            f"(lower bound {oracle['all']['lo']:.3f})"
        )
    return flags
