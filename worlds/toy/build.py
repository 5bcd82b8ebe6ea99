"""Remake the toy world, stage by stage, resumable: corpus -> tokenizer -> target -> oracle ->
suite -> eval.

A finished stage is recorded (with its wall-clock seconds and device) in
``<work>/stages.json`` and skipped on the next run; the target and oracle trainings resume
from their last checkpoint. The shipped result goes to ``out`` (``data/toy_world``):
``target/`` (weights + tokenizer), ``oracle/`` (adapter + ``oracle_config.json``, base model
``../target``), ``build_config.json``, ``suites/`` (the held-out suite files, named in
``world.json``) and ``metrics.json`` (the target's checks and ``oracle eval`` on the suites).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from training.world_build import StagedBuild, read_jsonl, write_jsonl
from worlds.toy.oracle_data import OracleDataConfig
from worlds.toy.target import TargetConfig
from worlds.toy.world import World

log = logging.getLogger(__name__)
STAGES = ("corpus", "tokenizer", "target", "oracle", "suite", "eval")


@dataclass
class OracleStageConfig:
    """The oracle's recipe (passed to ``training.TrainConfig``)."""

    read_layer: int = field(default=2, metadata={"help": "target block read"})
    injection_site: str = field(default="layer:1", metadata={"help": "where vectors are added"})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank"})
    learning_rate: float = field(default=2e-3, metadata={"help": "peak learning rate"})
    max_steps: int = field(default=2000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=64, metadata={"help": "rows per step"})
    n_conversations: int = field(default=40000, metadata={"help": "conversations (2 rows each)"})
    data: OracleDataConfig = field(
        default_factory=OracleDataConfig, metadata={"help": "the data recipe (families, reads)"}
    )

    def __post_init__(self) -> None:
        if isinstance(self.data, dict):
            self.data = OracleDataConfig(**self.data)


@dataclass
class BuildConfig:
    """Everything that decides the toy world's build (saved as ``build_config.json``)."""

    seed: int = field(default=0, metadata={"help": "seed of the corpus and trainings"})
    n_train: int = field(default=60000, metadata={"help": "target pretraining conversations"})
    vocab_size: int = field(default=4096, metadata={"help": "BPE vocabulary size asked for"})
    eval_per_persona: int = field(default=40, metadata={"help": "target replies per persona"})
    suite_conversations: int = field(
        default=200, metadata={"help": "held-out conversations per suite (groups)"}
    )
    target: TargetConfig = field(default_factory=TargetConfig)
    oracle: OracleStageConfig = field(default_factory=OracleStageConfig)

    @classmethod
    def from_dict(cls, data: dict) -> BuildConfig:
        data = dict(data)
        target = TargetConfig(**data.pop("target", {}))
        oracle = OracleStageConfig(**data.pop("oracle", {}))
        return cls(target=target, oracle=oracle, **data)


class Build(StagedBuild):
    """One build of the toy world into ``out``, with intermediate files in ``work``."""

    def __init__(
        self,
        out: Path,
        work: Path,
        config: BuildConfig,
        device: str = "auto",
        progress: bool = True,
    ) -> None:
        self.out, self.work, self.config = Path(out), Path(work), config
        self.device = device
        self.progress = progress
        self.world = World.load(self.out, seed=config.seed)
        self.work.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ stages
    def stage_corpus(self) -> None:
        from worlds.toy.generator import generate

        seed = self.config.seed
        write_jsonl(
            self.work / "corpus_train.jsonl",
            generate(self.world, "train", self.config.n_train, seed),
        )
        oracle_n = self.config.oracle.n_conversations
        write_jsonl(
            self.work / "oracle_conversations.jsonl",
            generate(self.world, "train", oracle_n, seed + 1),
        )

    def _texts(self) -> list[str]:
        from worlds.toy.tokenizer import chatml

        return [chatml(c["messages"]) for c in read_jsonl(self.work / "corpus_train.jsonl")]

    def stage_tokenizer(self) -> None:
        from worlds.toy.tokenizer import oracle_lines, save_tokenizer, train_tokenizer

        texts = self._texts()
        bank_text = [json.dumps(self.world.bank), json.dumps(self.world.spec)]
        tok = train_tokenizer(
            texts + oracle_lines(self.config.seed) + bank_text, self.config.vocab_size
        )
        save_tokenizer(tok, self.work / "tokenizer")
        log.info("tokenizer: %d tokens", len(tok))

    def stage_target(self) -> None:
        from transformers import AutoTokenizer

        from worlds.toy.target import pretrain_target

        tok = AutoTokenizer.from_pretrained(str(self.work / "tokenizer"))
        pretrain_target(
            self.config.target,
            tok,
            self._texts(),
            self.out / "target",
            self.work,
            self.device,
            self.progress,
        )

    def stage_oracle(self) -> None:
        from datasets import Dataset

        from oracle.models import load_tokenizer
        from training import TrainConfig, train_oracle
        from worlds.toy.generator import generate
        from worlds.toy.oracle_data import oracle_rows

        cfg = self.config.oracle
        path = self.work / "oracle_conversations.jsonl"
        if not path.is_file():  # a fresh work directory: the corpus is deterministic
            write_jsonl(
                path, generate(self.world, "train", cfg.n_conversations, self.config.seed + 1)
            )
        convs = read_jsonl(path)
        tokenizer = load_tokenizer(str(self.out / "target"))
        rows = oracle_rows(convs, self.world, self.config.seed, cfg.data, tokenizer)
        train_dir = self.work / "oracle"
        config = TrainConfig(
            model=str((self.out / "target").resolve()),
            output_dir=str(train_dir),
            lora_r=cfg.lora_r,
            lora_alpha=2 * cfg.lora_r,
            learning_rate=cfg.learning_rate,
            lr_scheduler="cosine",
            warmup_ratio=0.05,
            max_steps=cfg.max_steps,
            batch_size=cfg.batch_size,
            read_layers=[cfg.read_layer],
            injection_site=cfg.injection_site,
            mode="add",
            dtype="fp32",
            max_read_positions=160,
            serve_positions="non_system",
            seed=self.config.seed,
            save_steps=500,
            save_total_limit=1,
            logging_steps=50,
            device="cpu" if self.device == "cpu" else "auto",
            resume=True
            if (train_dir / "ckpt").is_dir() and any((train_dir / "ckpt").glob("checkpoint-*"))
            else None,
        )
        train_oracle(config, Dataset.from_list(rows), progress=self.progress)
        ship = self.out / "oracle"
        if ship.exists():
            shutil.rmtree(ship)
        ship.mkdir(parents=True)
        for item in train_dir.iterdir():
            if item.is_file() and item.name != "README.md":
                shutil.copy2(item, ship / item.name)
        # relative paths, so that the shipped directory works after a clone
        for name, keys in (
            ("oracle_config.json", {"base_model": "../target"}),
            ("training_config.json", {"model": "../target", "output_dir": "."}),
        ):
            if (ship / name).is_file():
                data = json.loads((ship / name).read_text())
                data.update(keys)
                data.pop("resume", None)
                (ship / name).write_text(json.dumps(data, indent=2) + "\n")
        self.oracle_shipped()

    def stage_suite(self) -> None:
        from worlds.toy.suite import write_suites

        write_suites(self.out, self.config.suite_conversations, self.config.seed)

    def stage_eval(self) -> None:
        from worlds.toy.evaluate import evaluate_all

        cfg = self.config
        evaluate_all(
            self.out,
            self.work / "evaluation",
            self.device,
            self.stages_path,
            cfg.eval_per_persona,
            cfg.seed,
        )
