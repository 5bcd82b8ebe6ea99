"""``oracle_config.json``: everything needed to read or serve an oracle, so nothing guesses.

An oracle directory holds a peft adapter (``adapter_config.json`` + weights) and this file.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

from oracle.errors import OracleConfigError
from oracle.jsonio import read_json
from oracle.positions import parse_positions
from oracle.prompts import DEFAULT_TEMPLATE

if TYPE_CHECKING:
    from oracle.inject import InjectionSpec

FORMAT_VERSION = 1
CONFIG_NAME = "oracle_config.json"


@dataclass
class OracleConfig:
    """How an oracle was trained and must be used."""

    base_model: str = field(metadata={"help": "hub id or path of the target/base model"})
    read_layers: list[int] = field(
        default_factory=lambda: [1],
        metadata={"help": "target blocks the oracle was trained to read"},
    )
    injection_site: str = field(
        default="layer:1", metadata={"help": "'embedding' or 'layer:K' (output of block K)"}
    )
    mode: str = field(default="add", metadata={"help": "'add' (norm-matched) or 'replace'"})
    coefficient: float = field(default=1.0, metadata={"help": "scale of norm-matched addition"})
    placeholder: str = field(default=" ?", metadata={"help": "one-token placeholder string"})
    prompt_template: str = field(
        default=DEFAULT_TEMPLATE,
        metadata={"help": "oracle prompt; {layer} {placeholders} {question}"},
    )
    positions: str = field(
        default="non_system", metadata={"help": "default target positions to read"}
    )
    centered: bool = field(
        default=False,
        metadata={
            "help": "subtract the read layer's mean activation (activation_mean.safetensors) "
            "before injecting"
        },
    )
    pooling: str = field(
        default="none",
        metadata={
            "help": "what reaches the oracle from the read positions: none (one vector each), "
            "mean (their mean) or mean_last (the mean and the last position)"
        },
    )
    max_positions: int | None = field(
        default=None,
        metadata={
            "help": "read positions the oracle receives at most: the last ones of a longer "
            "span (training's max_read_positions; null = all)"
        },
    )
    capture_dtype: str | None = field(
        default=None,
        metadata={
            "help": "dtype of the target's weights when the training activations were "
            "captured (bfloat16, float32); serving in another dtype is allowed (the "
            "evaluation's bf16 check measures the difference)"
        },
    )
    yes_answer: str = field(default="Yes", metadata={"help": "answer text meaning yes"})
    no_answer: str = field(default="No", metadata={"help": "answer text meaning no"})
    d_model: int | None = field(default=None, metadata={"help": "hidden size of the base model"})
    fingerprint: dict[str, str] | None = field(
        default=None, metadata={"help": "hashes of base config, tokenizer and weights"}
    )
    oracle_model: str | None = field(
        default=None, metadata={"help": "a separate oracle base model, if not the target's own"}
    )
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.format_version > FORMAT_VERSION:
            raise OracleConfigError(
                f"oracle_config.json has format version {self.format_version}; this version of "
                f"the toolkit reads up to {FORMAT_VERSION}"
            )
        if not self.read_layers or not all(isinstance(x, int) for x in self.read_layers):
            raise OracleConfigError("read_layers must be a non-empty list of integers")
        from oracle.inject import InjectionSpec

        try:
            InjectionSpec(self.injection_site, self.mode, self.coefficient)  # type: ignore[arg-type]
            parse_positions(self.positions)
        except ValueError as exc:
            raise OracleConfigError(f"oracle_config.json: {exc}") from None
        for key in ("{layer}", "{placeholders}", "{question}"):
            if key not in self.prompt_template:
                raise OracleConfigError(f"prompt_template must contain {key}")
        from oracle.pooling import check_pooling

        check_pooling(self.pooling)
        if self.max_positions is not None and (
            not isinstance(self.max_positions, int) or self.max_positions < 1
        ):
            raise OracleConfigError("max_positions must be a positive integer or null")

    @property
    def injection(self) -> InjectionSpec:
        from oracle.inject import InjectionSpec

        return InjectionSpec(self.injection_site, self.mode, self.coefficient)  # type: ignore[arg-type]

    @property
    def default_layer(self) -> int:
        return self.read_layers[len(self.read_layers) // 2]

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict) -> OracleConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise OracleConfigError(f"unknown fields in oracle_config.json: {unknown}")
        if "base_model" not in data:
            raise OracleConfigError("oracle_config.json lacks 'base_model'")
        return cls(**data)

    @classmethod
    def load(cls, directory: str | Path) -> OracleConfig:
        path = Path(directory)
        if not path.is_dir():
            raise OracleConfigError(f"oracle directory {str(path)!r} does not exist")
        config_path = path / CONFIG_NAME
        if not config_path.is_file():
            raise OracleConfigError(
                f"{str(path)!r} has no {CONFIG_NAME}; an oracle directory holds the peft "
                f"adapter and {CONFIG_NAME}"
            )
        return cls.from_dict(read_json(config_path, CONFIG_NAME, OracleConfigError))
