"""``train_oracle``: the public entry point that trains an oracle and saves its directory."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from transformers import TrainingArguments, set_seed
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import get_last_checkpoint

from oracle.adapter import ADAPTER_NAME, add_oracle_lora, save_oracle
from oracle.capture import pad_id_of
from oracle.centering import save_means
from oracle.config import OracleConfig
from oracle.errors import OracleInputError
from oracle.models import load_config, load_model, load_tokenizer, resolve_dtype
from training.collate import OracleCollator
from training.config import TrainConfig
from training.means import load_or_compute_means
from training.prepare import prepare_dataset
from training.reading_check import ReadingCheck
from training.sampling import default_read_layers
from training.schema import validate_row
from training.trainer import LossLogger, OracleTrainer

log = logging.getLogger(__name__)
TRAINING_CONFIG_NAME = "training_config.json"
METRICS_NAME = "metrics.json"


def count_layers(model_path: str) -> int:
    """Decoder block count from the model's config (no weights loaded)."""
    config = load_config(model_path)
    text = getattr(config, "text_config", None) or config
    for name in ("num_hidden_layers", "n_layer"):
        value = getattr(text, name, None)
        if isinstance(value, int):
            return value
    raise OracleInputError(f"cannot find the number of layers in the config of {model_path!r}")


def _training_args(
    config: TrainConfig, on_gpu: bool, has_eval: bool, bf16_weights: bool = False, **extra: Any
) -> TrainingArguments:
    bf16 = bf16_weights if config.bf16 is None else config.bf16
    eval_every = config.eval_steps if has_eval and config.eval_steps else None
    return TrainingArguments(
        output_dir=str(Path(config.output_dir) / "ckpt"),
        max_steps=config.max_steps,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        learning_rate=config.learning_rate,
        lr_scheduler_type=config.lr_scheduler,
        warmup_steps=int(config.warmup_ratio * config.max_steps),
        weight_decay=config.weight_decay,
        max_grad_norm=config.max_grad_norm,
        logging_steps=config.logging_steps,
        eval_strategy="steps" if eval_every else "no",
        eval_steps=eval_every,
        save_strategy="steps" if config.save_steps else "no",
        save_steps=config.save_steps or 500,
        save_total_limit=config.save_total_limit,
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        gradient_checkpointing=config.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False},
        train_sampling_strategy="group_by_length" if config.group_by_length else "random",
        length_column_name="length",
        remove_unused_columns=False,
        label_names=["labels"],
        report_to=[],
        use_cpu=not on_gpu,
        dataloader_num_workers=config.dataloader_workers,
        ddp_find_unused_parameters=False,
        **extra,
    )


def _resume_path(config: TrainConfig) -> str | None:
    if config.resume in (None, False):
        return None
    if config.resume is True or config.resume == "true":
        last = get_last_checkpoint(str(Path(config.output_dir) / "ckpt"))
        if last is None:
            raise OracleInputError(f"resume=true but {config.output_dir}/ckpt holds no checkpoint")
        return last
    if not Path(str(config.resume)).is_dir():
        raise OracleInputError(
            f"config field 'resume': checkpoint {config.resume!r} does not exist"
        )
    return str(config.resume)


def _check_rows(path: str) -> list[dict[str, Any]]:
    """The reading check's rows (a schema JSONL/Parquet file or dataset)."""
    from training.data import load_rows

    rows = load_rows(path).to_list()
    if not rows:
        raise OracleInputError(f"config field 'check_data': {path!r} holds no rows")
    for i, row in enumerate(rows):
        validate_row(row, i)
    return rows


def _load_best(peft_model: Any, best_dir: Path) -> None:
    """Put the adapter weights of the best reading check back into ``peft_model``."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    files = sorted(best_dir.rglob("adapter_model.safetensors"))
    if not files:
        return
    set_peft_model_state_dict(peft_model, load_file(str(files[0])), adapter_name=ADAPTER_NAME)
    log.info("the adapter of the best reading check (%s) is the one saved", best_dir)


def train_oracle(
    config: TrainConfig,
    train: Dataset,
    eval: Dataset | None = None,  # noqa: A002  (the documented keyword)
    *,
    progress: bool = False,
) -> Path:
    """Train an oracle (LoRA on ``config.model``) on ``train`` and save it to ``config.output_dir``.

    ``train``/``eval`` hold rows of the schema in :mod:`training.schema`. Every row is checked
    before the model is loaded; a bad one raises ``OracleInputError`` naming the example and
    field. The saved directory holds the adapter, ``oracle_config.json``,
    ``training_config.json`` and ``metrics.json``, and loads with ``ActivationOracle.load``.
    ``progress`` shows the Trainer's progress bar (the CLI turns it on).

    >>> path = train_oracle(TrainConfig(model="path/to/model", output_dir="out"), dataset)
    """
    set_seed(config.seed)
    on_gpu = torch.cuda.is_available() and not config.device.startswith("cpu")
    tokenizer = load_tokenizer(config.model)
    n_layers = count_layers(config.model)
    read_layers = config.read_layers or default_read_layers(n_layers)
    for layer in read_layers:
        if not -n_layers <= layer < n_layers:
            raise OracleInputError(
                f"config field 'read_layers': {layer} is out of range for {n_layers} blocks"
            )
    read_layers = sorted({layer % n_layers for layer in read_layers})
    train_set = prepare_dataset(train, tokenizer, n_layers, read_layers, config, "train set")
    eval_set = None
    if eval is not None:
        eval_set = prepare_dataset(eval, tokenizer, n_layers, read_layers, config, "eval set")
    resume = _resume_path(config)

    # Weights load on the CPU in the dtype of the device they will train on; the Trainer moves
    # them (to this rank's GPU under torchrun). peft keeps the LoRA in fp32 over bf16 weights.
    dtype = resolve_dtype(config.dtype, "cuda" if on_gpu else "cpu")
    attention = config.attention
    if attention == "auto":
        attention = None if on_gpu else "eager"
    model, _ = load_model(config.model, dtype=dtype, device="cpu", attn_implementation=attention)
    out = Path(config.output_dir)
    means = None
    if config.center_activations:
        means = load_or_compute_means(
            model, train_set, read_layers, pad_id_of(tokenizer), config.center_rows, out
        )
    model = add_oracle_lora(
        model, config.lora_r, config.lora_alpha, config.lora_dropout, config.lora_targets
    )
    oracle_config = OracleConfig(
        base_model=config.base_model_ref or config.model,
        read_layers=list(read_layers),
        injection_site=config.injection_site,
        mode=config.mode,
        coefficient=config.coefficient,
        placeholder=config.placeholder,
        prompt_template=config.prompt_template,
        positions=config.serve_positions,
        centered=means is not None,
        pooling=config.pooling,
        capture_dtype=str(dtype).removeprefix("torch."),
        max_positions=config.max_read_positions,
    )
    args = _training_args(
        config,
        on_gpu,
        eval_set is not None,
        bf16_weights=dtype == torch.bfloat16,
        disable_tqdm=not progress,
    )
    logger = LossLogger()
    callbacks: list[Any] = [logger]
    check = None
    if config.check_data:
        check = ReadingCheck(
            _check_rows(config.check_data),
            tokenizer,
            oracle_config,
            means,
            out,
            config.check_steps,
            config.check_stop_step,
            config.check_patience,
            config.max_read_positions,
        )
        callbacks.append(check)
    trainer = OracleTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=OracleCollator(pad_id_of(tokenizer)),
        callbacks=callbacks,
        injection=config.to_injection(),
        means=means,
        pooling=config.pooling,
    )
    trainer.remove_callback(PrinterCallback)  # logs go through `logging` (LossLogger)
    start = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    final_step = int(result.global_step)
    if check is not None and (out / "best").is_dir():
        _load_best(trainer.accelerator.unwrap_model(trainer.model), out / "best")
    metrics: dict[str, Any] = {
        "train_loss": float(result.training_loss),
        "steps": int(result.global_step),
        "world_size": int(args.world_size),
        "seconds": seconds,
        "read_layers": list(read_layers),
        "n_train": len(train_set),
        "dtype": str(dtype).removeprefix("torch."),
        "attention": attention or "default",
        "centered": means is not None,
        "pooling": config.pooling,
        "history": logger.history,
    }
    if check is not None:
        best = max(check.history, key=lambda h: h["mean_accuracy"], default=None)
        metrics["reading_check"] = {
            "history": check.history,
            "best_step": best["step"] if best else None,
            "shipped_step": best["step"] if (out / "best").is_dir() and best else final_step,
            "stopped": check.stopped,
        }
    if eval_set is not None:
        metrics["eval_loss"] = float(trainer.evaluate()["eval_loss"])
    if trainer.is_world_process_zero():
        peft_model = trainer.accelerator.unwrap_model(trainer.model)
        save_oracle(peft_model, tokenizer, oracle_config, out)
        if means is not None:
            save_means(means, out)
        config.save(out / TRAINING_CONFIG_NAME)
        (out / METRICS_NAME).write_text(json.dumps(metrics, indent=2) + "\n")
        log.info("saved the oracle to %s (train loss %.4f)", out, metrics["train_loss"])
    trainer.accelerator.wait_for_everyone()
    return out
