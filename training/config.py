"""``TrainConfig``: every setting of an oracle training run, each with a help string.

The same fields are the keys of a YAML/JSON config file (``oracle train --config FILE``) and the
CLI flags (``--lora-r 32`` overrides ``lora_r``). Validation runs in ``__post_init__``, so a bad
value fails before any model is loaded.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oracle.errors import OracleInputError

if TYPE_CHECKING:
    from oracle.inject import InjectionSpec

# Equal to oracle.prompts.DEFAULT_TEMPLATE (a test checks it); kept here so that importing this
# module (the CLI builds its flags from it) does not import torch or transformers.
DEFAULT_TEMPLATE = "Layer {layer}:{placeholders}\n{question}"

POSITION_KINDS = ("single", "window", "span")


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class TrainConfig:
    """How to train an oracle. Field help strings double as the config-file documentation."""

    model: str = _help("hub id or local path of the target model (the oracle is its LoRA)")
    output_dir: str = _help("where the oracle directory is written (checkpoints in its ckpt/)")
    # --- data (read by `oracle train`; train_oracle takes datasets directly)
    train_data: str | list | dict | None = _help(
        "training data: a JSONL/Parquet/CSV path, a saved dataset dir, a hub id, a builder "
        "mapping ({builder: persona_qa, n: 1000}), or a list of those with 'weight' keys (a mix)",
        default=None,
    )
    eval_data: str | list | dict | None = _help(
        "held-out data, same forms as train_data", default=None
    )
    mix_size: int | None = _help(
        "rows drawn for a weighted mix (null = the parts' total)", default=None
    )
    # --- LoRA
    lora_r: int = _help("LoRA rank", default=16)
    lora_alpha: int = _help("LoRA alpha (scale = alpha / r)", default=32)
    lora_dropout: float = _help("dropout on the LoRA input", default=0.0)
    lora_targets: list[str] | str = _help(
        "modules that get LoRA: 'all-linear' or a list of names (q_proj, v_proj, ...)",
        default="all-linear",
    )
    # --- optimisation
    learning_rate: float = _help("peak learning rate (AdamW)", default=1e-4)
    lr_scheduler: str = _help(
        "transformers schedule: linear, cosine, constant, ...", default="linear"
    )
    warmup_ratio: float = _help("fraction of steps of linear warm-up", default=0.0)
    weight_decay: float = _help("AdamW weight decay", default=0.0)
    max_grad_norm: float = _help("gradient clipping norm (0 = off)", default=1.0)
    max_steps: int = _help(
        "optimizer steps to train (each = batch_size x grad_accum rows)", default=1000
    )
    batch_size: int = _help("rows per device per forward pass", default=8)
    grad_accum: int = _help("forward passes per optimizer step", default=1)
    # --- the oracle
    read_layers: list[int] | None = _help(
        "target blocks a row with layer=null is read at, drawn uniformly per row; "
        "null = 25/50/75% of depth",
        default=None,
    )
    injection_site: str = _help("'layer:K' (output of block K) or 'embedding'", default="layer:1")
    mode: str = _help("'add' (norm-matched addition) or 'replace'", default="add")
    coefficient: float = _help("scale of the norm-matched addition", default=1.0)
    placeholder: str = _help("one-token placeholder string in the oracle prompt", default=" ?")
    prompt_template: str = _help(
        "oracle prompt with {layer} {placeholders} {question}", default=DEFAULT_TEMPLATE
    )
    position_mix: dict[str, float] = _help(
        "weights of how many positions a sampled read takes: 'single' token, a short 'window', "
        "or the whole 'span'",
        default_factory=lambda: {"single": 0.25, "window": 0.25, "span": 0.5},
    )
    max_window: int = _help("longest window (tokens) of the 'window' kind", default=8)
    max_read_positions: int = _help(
        "cap on read positions per row (the span's last ones)", default=64
    )
    max_target_tokens: int = _help(
        "rows whose target input is longer fail validation", default=2048
    )
    base_model_ref: str | None = _help(
        "how oracle_config.json names the base model (e.g. a path relative to the oracle dir, "
        "'../target', for shipped oracles); null = the 'model' string",
        default=None,
    )
    serve_positions: str = _help(
        "position spec saved as the oracle's default for serving", default="non_system"
    )
    # --- run
    seed: int = _help("seed of the model init, data order and position/layer draws", default=0)
    eval_steps: int = _help("evaluate the eval set every N steps (0 = only at the end)", default=0)
    save_steps: int = _help("write a resumable checkpoint every N steps (0 = none)", default=0)
    save_total_limit: int | None = _help("keep at most this many checkpoints", default=2)
    logging_steps: int = _help("log the loss every N steps", default=10)
    dtype: str = _help(
        "base weights dtype: auto (bf16 on a GPU or a CPU with native bf16, AMX/AVX512-BF16; "
        "fp32 elsewhere), bf16, fp32. The LoRA and the optimiser stay fp32",
        default="auto",
    )
    attention: str = _help(
        "attention kernel: auto (eager on a CPU, where it beat SDPA on short rows; the "
        "library's default on a GPU), eager, sdpa",
        default="auto",
    )
    device: str = _help(
        "auto, cpu, cuda, cuda:1 (multi-process runs place ranks themselves)", default="auto"
    )
    bf16: bool | None = _help("bf16 autocast; null = on when the weights are bf16", default=None)
    gradient_checkpointing: bool = _help(
        "recompute activations in backward to save memory", default=False
    )
    group_by_length: bool = _help(
        "batch rows of similar length together (less padding)", default=False
    )
    resume: str | bool | None = _help(
        "resume from a checkpoint: a checkpoint path, true (the latest in output_dir/ckpt) or null",
        default=None,
    )
    dataloader_workers: int = _help("data-loader worker processes", default=0)
    # --- what the oracle receives
    center_activations: bool = _help(
        "subtract each read layer's mean activation (over center_rows training rows, saved "
        "with the oracle) before injecting: the shared mean otherwise dominates the direction",
        default=False,
    )
    center_rows: int = _help("training rows whose read positions give the mean", default=512)
    pooling: str = _help(
        "what reaches the oracle from a row's read positions: none (one vector each), mean "
        "(one vector, their mean) or mean_last (the mean and the last position)",
        default="none",
    )
    # --- the reading check: held-out answers during training
    check_data: str | None = _help(
        "held-out rows (schema JSONL) the oracle answers every check_steps steps; accuracy and "
        "top-answer share per 'source' are logged beside the loss (null = no check)",
        default=None,
    )
    check_steps: int = _help("steps between reading checks", default=250)
    check_stop_step: int | None = _help(
        "the planned onset: a run whose every check family is still at or below its best "
        "constant answer (+0.05) at this step stops there, reported as collapsed (null = never)",
        default=None,
    )
    check_patience: int = _help(
        "stop after this many checks without a better mean accuracy (0 = never); the best "
        "check's adapter is what is saved",
        default=0,
    )

    def __post_init__(self) -> None:
        for name in ("model", "output_dir"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise OracleInputError(f"config field {name!r} is required")
        positive = ("lora_r", "lora_alpha", "max_steps", "batch_size", "grad_accum", "max_window")
        for name in positive + ("max_read_positions", "max_target_tokens", "logging_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise OracleInputError(
                    f"config field {name!r} must be a positive integer, got {value!r}"
                )
        if self.pooling not in ("none", "mean", "mean_last"):
            raise OracleInputError(
                f"config field 'pooling' must be none, mean or mean_last, got {self.pooling!r}"
            )
        if self.attention not in ("auto", "eager", "sdpa"):
            raise OracleInputError(
                f"config field 'attention' must be auto, eager or sdpa, got {self.attention!r}"
            )
        for name in ("center_rows", "check_steps"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise OracleInputError(
                    f"config field {name!r} must be a positive integer, got {value!r}"
                )
        if self.check_stop_step is not None and (
            not isinstance(self.check_stop_step, int) or self.check_stop_step < 1
        ):
            raise OracleInputError(
                f"config field 'check_stop_step' must be a positive integer or null, got {self.check_stop_step!r}"
            )
        for name in ("eval_steps", "save_steps", "dataloader_workers", "check_patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise OracleInputError(
                    f"config field {name!r} must be an integer >= 0, got {value!r}"
                )
        if not self.learning_rate > 0:
            raise OracleInputError(
                f"config field 'learning_rate' must be > 0, got {self.learning_rate}"
            )
        if not 0 <= self.lora_dropout < 1 or not 0 <= self.warmup_ratio < 1:
            raise OracleInputError(
                "config fields 'lora_dropout' and 'warmup_ratio' must be in [0, 1)"
            )
        if self.read_layers is not None and (
            not self.read_layers or not all(isinstance(x, int) for x in self.read_layers)
        ):
            raise OracleInputError(
                f"config field 'read_layers' must be a non-empty list of ints or null, got {self.read_layers!r}"
            )
        self.to_injection()  # validates site, mode and coefficient
        for key in ("{layer}", "{placeholders}", "{question}"):
            if key not in self.prompt_template:
                raise OracleInputError(f"config field 'prompt_template' must contain {key}")
        unknown = sorted(set(self.position_mix) - set(POSITION_KINDS))
        if unknown or not self.position_mix:
            raise OracleInputError(
                f"config field 'position_mix' takes the keys {list(POSITION_KINDS)}, got {sorted(self.position_mix)}"
            )
        if any(w < 0 for w in self.position_mix.values()) or sum(self.position_mix.values()) <= 0:
            raise OracleInputError(
                "config field 'position_mix' needs weights >= 0 with a positive sum"
            )
        if self.dtype not in ("auto", "bf16", "bfloat16", "fp32", "float32", "fp16", "float16"):
            raise OracleInputError(
                f"config field 'dtype' must be auto, bf16 or fp32, got {self.dtype!r}"
            )

    def to_injection(self) -> InjectionSpec:
        """The injection spec of this config (imports torch, so not at module level)."""
        from oracle.inject import InjectionSpec

        return InjectionSpec(self.injection_site, self.mode, self.coefficient)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys fail, naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OracleInputError(f"unknown config field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """Read a YAML (``.yaml``/``.yml``) or JSON config file; ``overrides`` win."""
        path = Path(path)
        if not path.is_file():
            raise OracleInputError(f"config file {str(path)!r} does not exist")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            data = json.loads(text)
        if not isinstance(data, dict):
            raise OracleInputError(f"config file {str(path)!r} must hold a mapping of fields")
        # Keys that only document the file (compute estimates, notes) start with an underscore.
        data = {k: v for k, v in data.items() if not str(k).startswith("_")}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)
