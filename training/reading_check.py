"""The reading check: every N steps the oracle being trained answers a fixed held-out set.

A falling loss does not say that the oracle reads: a loss can fall for hundreds of steps while
every answer is the answer prior ("No persona."). The check asks the model as it stands, by
the same capture-then-answer path that serving uses (:class:`oracle.oracle.ActivationOracle`),
and logs per family (the rows' ``source``):

- accuracy (a normalised exact match of the answer with the row's ``answer``),
- the best constant answer's accuracy on the same rows,
- the top answer's share of the oracle's answers.

Results go to ``<output_dir>/reading_check.jsonl`` (one line per check; a resumed run appends)
and to the log. The run stops when the check says so:

- at ``check_stop_step`` (the planned onset) if every family is still at or below its best
  constant + 0.05 (``collapsed``);
- after ``check_patience`` checks without a better mean accuracy (early stopping).

The adapter of the best check is saved to ``<output_dir>/best`` (what ``train_oracle`` ships).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from oracle.config import OracleConfig
from oracle.inputs import TargetInput
from oracle.oracle import ActivationOracle

log = logging.getLogger(__name__)
CHECK_FILE = "reading_check.jsonl"
COLLAPSE_MARGIN = 0.05
_ARTICLES = re.compile(r"^(a|an|the)\s+")


def normalise(answer: str) -> str:
    """Lower case, no punctuation at the ends, no leading article: "A pirate." -> "pirate"."""
    text = answer.strip().lower().strip(" .!?,;:\"'")
    return _ARTICLES.sub("", text).strip()


def score(answers: list[str], golds: list[str], families: list[str]) -> dict[str, dict]:
    """Per family: n, accuracy, the best constant answer and its accuracy, the top answer's
    share. Pure (no model): the figures the check logs."""
    by_family: dict[str, list[int]] = defaultdict(list)
    for i, family in enumerate(families):
        by_family[family].append(i)
    out = {}
    for family, idx in sorted(by_family.items()):
        said = [normalise(answers[i]) for i in idx]
        gold = [normalise(golds[i]) for i in idx]
        constant, constant_hits = Counter(gold).most_common(1)[0]
        top, top_count = Counter(said).most_common(1)[0]
        out[family] = {
            "n": len(idx),
            "accuracy": sum(s == g for s, g in zip(said, gold, strict=True)) / len(idx),
            "best_constant": constant,
            "best_constant_accuracy": constant_hits / len(idx),
            "top_answer": top,
            "top_share": top_count / len(idx),
        }
    return out


def collapsed(families: dict[str, dict]) -> bool:
    """Every family at or below its best constant answer + :data:`COLLAPSE_MARGIN`."""
    return all(
        f["accuracy"] <= f["best_constant_accuracy"] + COLLAPSE_MARGIN for f in families.values()
    )


class ReadingCheck(TrainerCallback):
    """Answer ``rows`` (schema rows: messages, add_generation_prompt, question, answer,
    source) every ``every`` steps with the model being trained."""

    def __init__(
        self,
        rows: list[dict[str, Any]],
        tokenizer,
        oracle_config: OracleConfig,
        means: dict[int, torch.Tensor] | None,
        out_dir: Path,
        every: int,
        stop_step: int | None = None,
        patience: int = 0,
        max_read_positions: int = 64,
        batch_size: int = 16,
        max_new_tokens: int = 12,
    ) -> None:
        self.rows = rows
        self.tokenizer = tokenizer
        self.oracle_config = oracle_config
        self.means = means
        self.out_dir = Path(out_dir)
        self.every = every
        self.stop_step = stop_step
        self.patience = patience
        self.max_read = max_read_positions
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.history: list[dict] = self._earlier()
        self.best = max((h["mean_accuracy"] for h in self.history), default=-1.0)
        self.stopped: str | None = None

    def _earlier(self) -> list[dict]:
        path = self.out_dir / CHECK_FILE
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    @torch.no_grad()
    def answers(self, model) -> list[str]:
        """The model's greedy answers to every row, as served (capture with the adapter off,
        the span's last ``max_read_positions`` read, centred if the oracle is)."""
        ao = ActivationOracle(model, self.tokenizer, self.oracle_config, means=self.means)
        layer = self.oracle_config.default_layer
        inputs = [
            TargetInput(
                messages=r["messages"],
                prompt=r.get("prompt"),
                add_generation_prompt=bool(r.get("add_generation_prompt")),
            )
            for r in self.rows
        ]
        positions = [r.get("positions") or self.oracle_config.positions for r in self.rows]
        caps = []
        for spec in dict.fromkeys(positions):
            idx = [i for i, p in enumerate(positions) if p == spec]
            got = ao.capture([inputs[i] for i in idx], [layer], spec, self.batch_size)
            caps += list(zip(idx, got, strict=True))
        caps.sort(key=lambda pair: pair[0])
        acts = [cap.activations[0][-self.max_read :] for _, cap in caps]
        return ao.answer(
            acts,
            [r["question"] for r in self.rows],
            layer=layer,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
        )

    def run(self, model, step: int) -> dict:
        start = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            answers = self.answers(model)
        finally:
            model.train(was_training)
        families = score(
            answers,
            [r["answer"] for r in self.rows],
            [r.get("source") or "all" for r in self.rows],
        )
        entry = {
            "step": step,
            "seconds": round(time.perf_counter() - start, 1),
            "mean_accuracy": sum(f["accuracy"] for f in families.values()) / len(families),
            "collapsed": collapsed(families),
            "families": families,
            "examples": [
                {"source": r.get("source"), "answer": r["answer"], "said": a}
                for r, a in list(zip(self.rows, answers, strict=True))[:6]
            ],
        }
        self.history.append(entry)
        with (self.out_dir / CHECK_FILE).open("a") as f:
            f.write(json.dumps(entry) + "\n")
        shown = "; ".join(
            f"{name} {f['accuracy']:.3f} (constant {f['best_constant_accuracy']:.3f}, "
            f"top {f['top_answer']!r} {f['top_share']:.0%})"
            for name, f in families.items()
        )
        log.info("reading check at step %d (%.0f s): %s", step, entry["seconds"], shown)
        return entry

    def on_step_end(self, args, state, control, model=None, **kwargs):  # noqa: D102
        if state.global_step % self.every or not state.is_world_process_zero:
            return control
        entry = self.run(model, state.global_step)
        if entry["mean_accuracy"] > self.best:
            self.best = entry["mean_accuracy"]
            model.save_pretrained(str(self.out_dir / "best"))
            (self.out_dir / "best" / "check.json").write_text(json.dumps(entry, indent=2) + "\n")
        if (
            self.stop_step is not None
            and state.global_step >= self.stop_step
            and entry["collapsed"]
        ):
            self.stopped = f"collapsed at step {state.global_step} (the planned onset)"
        scores = [h["mean_accuracy"] for h in self.history]
        since_best = len(scores) - 1 - scores.index(max(scores))
        if self.patience and since_best >= self.patience:
            self.stopped = (
                f"no better reading for {self.patience} checks (step {state.global_step})"
            )
        if self.stopped:
            log.warning("stopping: %s", self.stopped)
            control.should_training_stop = True
        return control
