"""Pretrain the toy world's target from scratch: a small Llama, plain causal-LM training with
the Hugging Face ``Trainer`` on the rendered conversations.

head_dim is 64 so that vLLM on CPU can serve the target. Training resumes from the last
checkpoint under ``<work>/target_ckpt`` when one exists.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers.trainer_utils import get_last_checkpoint

log = logging.getLogger(__name__)


@dataclass
class TargetConfig:
    """Size and training recipe of the toy target."""

    hidden_size: int = field(default=256, metadata={"help": "model width"})
    num_hidden_layers: int = field(default=4, metadata={"help": "decoder blocks"})
    num_attention_heads: int = field(default=4, metadata={"help": "heads of 64 dims"})
    intermediate_size: int = field(default=1024, metadata={"help": "MLP width"})
    max_position_embeddings: int = field(default=256, metadata={"help": "longest input"})
    steps: int = field(default=3000, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=64, metadata={"help": "conversations per step"})
    lr: float = field(default=2e-3, metadata={"help": "peak learning rate (cosine)"})
    warmup_steps: int = field(default=100, metadata={"help": "linear warm-up steps"})
    weight_decay: float = field(default=0.05, metadata={"help": "AdamW weight decay"})
    seed: int = field(default=0, metadata={"help": "initialisation and data-order seed"})
    max_seconds: float | None = field(
        default=None, metadata={"help": "stop early after this many seconds (a guard)"}
    )

    def to_dict(self) -> dict:
        return asdict(self)


def build_target(config: TargetConfig, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """A randomly initialised Llama sized by ``config`` for ``tokenizer``'s vocabulary."""
    torch.manual_seed(config.seed)
    llama = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_attention_heads,
        head_dim=config.hidden_size // config.num_attention_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(llama)


class TimeLimit(TrainerCallback):
    """Stop training once ``seconds`` have passed (a guard on a lent, time-limited machine)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):  # noqa: D102
        if time.perf_counter() - self.start > self.seconds:
            log.warning("time limit of %.0f s reached at step %d", self.seconds, state.global_step)
            control.should_training_stop = True
        return control


class TokenRows(torch.utils.data.Dataset):
    """Token id rows, one per conversation, as a map-style dataset for the Trainer."""

    def __init__(self, rows: list[list[int]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return {"input_ids": self.rows[i]}


class PadCollator:
    """Right-pads rows to the longest in the batch; labels are -100 on padding."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(b["input_ids"]) for b in batch)
        ids_BT = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
        mask_BT = torch.zeros((len(batch), width), dtype=torch.long)
        for i, b in enumerate(batch):
            n = len(b["input_ids"])
            ids_BT[i, :n] = torch.tensor(b["input_ids"])
            mask_BT[i, :n] = 1
        labels_BT = ids_BT.masked_fill(mask_BT == 0, -100)
        return {"input_ids": ids_BT, "attention_mask": mask_BT, "labels": labels_BT}


def pretrain_target(
    config: TargetConfig,
    tokenizer: PreTrainedTokenizerFast,
    texts: list[str],
    out_dir: str | Path,
    work_dir: str | Path,
    device: str = "auto",
    show_progress: bool = True,
) -> Path:
    """Train the target on ``texts`` (rendered conversations); save it with its tokenizer.

    Checkpoints go to ``work_dir/target_ckpt`` (every 500 steps) and training resumes from
    the last one. Returns ``out_dir``.
    """
    out_dir, ckpt_dir = Path(out_dir), Path(work_dir) / "target_ckpt"
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    rows = [ids[: config.max_position_embeddings] for ids in encoded]
    model = build_target(config, tokenizer)
    log.info("target: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    use_cpu = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    args = TrainingArguments(
        output_dir=str(ckpt_dir),
        max_steps=config.steps,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        lr_scheduler_type="cosine",
        warmup_steps=config.warmup_steps,
        weight_decay=config.weight_decay,
        adam_beta2=0.98,
        max_grad_norm=1.0,
        logging_steps=50,
        save_steps=500,
        save_total_limit=1,
        seed=config.seed,
        report_to=[],
        use_cpu=use_cpu,
        dataloader_num_workers=0,
        disable_tqdm=not show_progress,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=TokenRows(rows),
        data_collator=PadCollator(tokenizer.pad_token_id),
        callbacks=[TimeLimit(config.max_seconds)] if config.max_seconds else None,
    )
    last = get_last_checkpoint(str(ckpt_dir)) if ckpt_dir.is_dir() else None
    if last:
        log.info("resuming target training from %s", last)
    trainer.train(resume_from_checkpoint=last)
    model = trainer.model.to("cpu").float()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
    return out_dir
