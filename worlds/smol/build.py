"""Build the SmolLM2 world, stage by stage, resumable:
conversations -> replies -> rows -> oracle -> suite (read by ``oracle eval --world smol``).

A finished stage is recorded in ``<work>/stages.json`` (seconds, device) and skipped on the next
run; replies are written chunk by chunk and the oracle training checkpoints, so both resume.
The oracle is trained by the project's own pipeline from ``configs/smol.yaml`` (the same run as
``oracle train --config configs/smol.yaml``) and shipped to ``data/smol_world/oracle``.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training.world_build import StagedBuild, read_jsonl, write_jsonl
from worlds.smol.world import SMOL_WORLD, SmolWorld

log = logging.getLogger(__name__)
STAGES = ("conversations", "replies", "rows", "oracle", "suite")
DEFAULT_WORK = Path(".cache") / "smol_world"
MODEL = "smollm2-135m"
# held-out conversations kept for the eval loss: the first EVAL_HEAD and the last EVAL_TAIL;
# the reading check's come from the CHECK_SPAN before the tail (the suite uses the head's end)
EVAL_HEAD, EVAL_TAIL, CHECK_SPAN = 24, 200, 600


def _help(text: str, default):
    return field(default=default, metadata={"help": text})


@dataclass
class SmolBuildConfig:
    """Everything that decides the world's data (saved as ``data/smol_world/build_config.json``)."""

    seed: int = _help("seed of conversations, replies and rows", 0)
    model: str = _help("the target: a known name, a folder or a .gguf file", MODEL)
    dtype: str = _help(
        "weights of the reply generation: auto (bf16 on a GPU or a CPU with native bf16), fp32",
        "auto",
    )
    n_train: int = _help("training conversations (one oracle row each)", 30000)
    n_heldout: int = _help("held-out conversations (evaluation)", 3000)
    n_reply_train: int = _help("training conversations answered by the target", 3000)
    n_reply_heldout: int = _help("held-out conversations answered by the target", 400)
    max_new_tokens: int = _help("longest reply (tokens)", 40)
    reply_batch: int = _help("replies generated per batch", 48)
    n_context: int = _help("context-prediction rows over the replies", 1500)
    n_eval_rows: int = _help("held-out rows for the eval loss tracked in training", 96)
    n_check: int = _help("reading-check questions per family (persona, secret)", 60)
    n_suite_noreply: int = _help("held-out conversations without a reply in the suite", 400)
    n_suite_context: int = _help("context-prediction items in the suite", 120)
    n_suite_train: int = _help(
        "training conversations the suite gives the probe and text reader (half answered)", 2400
    )
    config: str = _help("the oracle's training config", "configs/smol.yaml")


class SmolBuild(StagedBuild):
    """One build: data and checkpoints in ``work``, the shipped oracle in ``out``."""

    def __init__(
        self, work: Path, config: SmolBuildConfig, out: Path = SMOL_WORLD, device: str = "cpu"
    ) -> None:
        self.work, self.config, self.out = Path(work), config, Path(out)
        self.device = device
        self.world = SmolWorld.load(self.out, seed=config.seed)
        self.work.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ stages
    def stage_conversations(self) -> None:
        from worlds.smol.generator import generate

        cfg = self.config
        write_jsonl(
            self.work / "conversations_train.jsonl",
            generate(self.world, "train", cfg.n_train, cfg.seed),
        )
        write_jsonl(
            self.work / "conversations_heldout.jsonl",
            generate(self.world, "heldout", cfg.n_heldout, cfg.seed + 1),
        )

    def stage_replies(self) -> None:
        from oracle.models import load_model
        from worlds.smol.replies import generate_replies

        cfg = self.config
        model, tokenizer = load_model(cfg.model, dtype=cfg.dtype, device=self.device)
        for split, n, seed in (
            ("train", cfg.n_reply_train, cfg.seed),
            ("heldout", cfg.n_reply_heldout, cfg.seed + 1),
        ):
            convs = read_jsonl(self.work / f"conversations_{split}.jsonl")[:n]
            generate_replies(
                model,
                tokenizer,
                convs,
                self.work / f"replies_{split}.jsonl",
                seed,
                cfg.reply_batch,
                cfg.max_new_tokens,
                progress=True,
            )

    def replies(self, split: str) -> dict[str, str]:
        path = self.work / f"replies_{split}.jsonl"
        return {r["id"]: r["reply"] for r in read_jsonl(path)} if path.is_file() else {}

    def stage_rows(self) -> None:
        import random

        from oracle.models import load_tokenizer
        from worlds.smol.oracle_data import context_rows, conversation_rows
        from worlds.smol.suite import check_rows, eval_rows

        cfg = self.config
        replies = self.replies("train")
        convs = read_jsonl(self.work / "conversations_train.jsonl")
        rows = conversation_rows(convs, replies, self.world, cfg.seed)
        texts = [r for r in replies.values() if r.strip()]
        rows += context_rows(texts, load_tokenizer(cfg.model), cfg.n_context, cfg.seed)
        random.Random(cfg.seed).shuffle(rows)
        write_jsonl(self.work / "rows_train.jsonl", rows)
        # eval-loss rows: the first held-out conversations (answered) and the last ones (not);
        # the suite stage (worlds/smol/suite.py) uses the conversations in between
        heldout = read_jsonl(self.work / "conversations_heldout.jsonl")
        half = cfg.n_eval_rows // 2
        answered = eval_rows(
            heldout[:EVAL_HEAD], self.replies("heldout"), self.world, half, cfg.seed
        )
        cut = eval_rows(heldout[-EVAL_TAIL:], {}, self.world, half, cfg.seed)
        write_jsonl(self.work / "rows_eval.jsonl", answered + cut)
        span = heldout[-EVAL_TAIL - CHECK_SPAN : -EVAL_TAIL]
        write_jsonl(
            self.work / "rows_check.jsonl", check_rows(span, self.world, cfg.n_check, cfg.seed)
        )

    def stage_suite(self) -> None:
        """The held-out suite (``data/smol_world/suite.jsonl``, the evaluation's format):
        persona and secret items about the held-out conversations after the eval-loss head
        (answered ones, then ones cut after the user turn), context items over held-out
        replies, and the training conversations the probe and text reader are fitted on."""
        from oracle.models import load_tokenizer
        from worlds.smol.suite import (
            as_suite_dict,
            context_items,
            conversation_items,
            train_suite_dicts,
        )

        cfg = self.config
        heldout = read_jsonl(self.work / "conversations_heldout.jsonl")
        replies = self.replies("heldout")
        answered = [c for c in heldout[EVAL_HEAD:] if c["id"] in replies]
        cut = [c for c in heldout[EVAL_HEAD:] if c["id"] not in replies][: cfg.n_suite_noreply]
        items = conversation_items(answered + cut, replies, self.world, seed=5)
        texts = [replies[c["id"]] for c in answered if replies[c["id"]].strip()]
        tokenizer = load_tokenizer(cfg.model)
        items += context_items(texts, tokenizer, cfg.n_suite_context, seed=6)
        train = read_jsonl(self.work / "conversations_train.jsonl")
        train_replies = self.replies("train")
        half = cfg.n_suite_train // 2
        with_reply = [c for c in train if c["id"] in train_replies][:half]
        without = [c for c in train if c["id"] not in train_replies][: cfg.n_suite_train - half]
        rows = [as_suite_dict(it, self.world) for it in items]
        rows += train_suite_dicts(with_reply + without, train_replies, self.world)
        write_jsonl(self.out / "suite.jsonl", rows)
        log.info("suite: %d test and %d train items", len(items), len(rows) - len(items))

    def stage_oracle(self) -> None:
        from training.config import TrainConfig
        from training.data import load_rows
        from training.train import train_oracle

        config = TrainConfig.load(self.config.config)
        ckpt = Path(config.output_dir) / "ckpt"
        if ckpt.is_dir() and any(ckpt.glob("checkpoint-*")):
            config.resume = True
        train = load_rows(str(config.train_data))
        evaluation = load_rows(str(config.eval_data)) if config.eval_data else None
        trained = train_oracle(config, train, evaluation, progress=True)
        ship(trained, self.out / "oracle")
        self.oracle_shipped()


def ship(trained: Path, ship_dir: Path) -> Path:
    """Copy the trained oracle's files to ``ship_dir`` with the adapter in bfloat16 (the size
    limit is 25 MB) and no machine paths in its configs."""
    from safetensors.torch import load_file, save_file

    if ship_dir.exists():
        shutil.rmtree(ship_dir)
    ship_dir.mkdir(parents=True)
    for item in Path(trained).iterdir():
        if item.is_file():
            shutil.copy2(item, ship_dir / item.name)
    weights = ship_dir / "adapter_model.safetensors"
    tensors = {k: v.to(torch.bfloat16) for k, v in load_file(str(weights)).items()}
    save_file(tensors, str(weights))
    for name, keys in (
        ("oracle_config.json", {"base_model": MODEL}),
        ("training_config.json", {"model": MODEL, "output_dir": "."}),
    ):
        path = ship_dir / name
        if path.is_file():
            data = json.loads(path.read_text())
            data.update(keys)
            data.pop("resume", None)
            path.write_text(json.dumps(data, indent=2) + "\n")
    return ship_dir
