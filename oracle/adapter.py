"""Create and save an oracle: a peft LoRA adapter named ``oracle`` plus ``oracle_config.json``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import PreTrainedTokenizerBase

from oracle.config import OracleConfig
from oracle.fingerprint import fingerprint
from oracle.layers import hidden_size

ADAPTER_NAME = "oracle"


def add_oracle_lora(
    model: nn.Module,
    r: int = 16,
    alpha: int = 32,
    dropout: float = 0.0,
    target_modules: str | list[str] = "all-linear",
) -> PeftModel:
    """Wrap ``model`` with a fresh LoRA adapter named ``oracle`` (B = 0: starts as the base)."""
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config, adapter_name=ADAPTER_NAME)


def save_oracle(
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    config: OracleConfig,
    directory: str | Path,
) -> Path:
    """Save the adapter and ``oracle_config.json`` (fingerprint and d_model filled in)."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path), selected_adapters=[ADAPTER_NAME])
    # peft writes a named adapter into a sub-folder; keep the directory flat.
    nested = path / ADAPTER_NAME
    if nested.is_dir():
        for item in nested.iterdir():
            item.replace(path / item.name)
        nested.rmdir()
    # peft also writes a model card template naming the base's load path (a machine path)
    card = path / "README.md"
    if card.is_file() and "library_name: peft" in card.read_text(errors="replace")[:500]:
        card.unlink()
    # peft records the base's load path; record the oracle's own (possibly relative) reference
    # instead, so that a shipped oracle names no path of the machine it was trained on.
    adapter_config = path / "adapter_config.json"
    if adapter_config.is_file():
        data = json.loads(adapter_config.read_text())
        data["base_model_name_or_path"] = config.base_model
        adapter_config.write_text(json.dumps(data, indent=2) + "\n")
    config.d_model = hidden_size(model)
    with torch.no_grad():
        config.fingerprint = fingerprint(model, tokenizer)
    config.save(path)
    return path
