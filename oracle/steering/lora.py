"""The steering LoRA: a second named adapter (``steer``) on the target, beside ``oracle``.

Capture runs with ``steer`` active and ``oracle`` off; the oracle answers with ``oracle`` active
and ``steer`` off (peft's ``set_adapter``, through
:func:`oracle.steering.hooks.active_adapter`). Saved as a flat peft adapter directory plus
``steering.json``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oracle.errors import OracleInputError

if TYPE_CHECKING:
    from torch import nn

    from oracle.oracle import ActivationOracle

# The peft adapter the lora method trains on the target. This module loads torch and peft
# when called, not when imported: the method registry (read for the CLI's options) names it.
STEER_ADAPTER = "steer"


def add_steering_lora(
    ao: ActivationOracle, r: int = 4, alpha: int = 8, seed: int = 0
) -> list[nn.Parameter]:
    """Add a fresh LoRA named ``steer`` (B = 0) beside the oracle adapter; returns its weights.

    The oracle adapter stays the active one; an older ``steer`` adapter is replaced.
    """
    from peft import LoraConfig, PeftModel

    if not isinstance(ao.target, PeftModel):
        raise OracleInputError(
            "LoRA steering needs the target loaded with an oracle adapter (a peft model); "
            "use method 'vector' otherwise"
        )
    if STEER_ADAPTER in ao.target.peft_config:
        ao.target.delete_adapter(STEER_ADAPTER)
    import torch

    torch.manual_seed(seed)
    config = LoraConfig(r=r, lora_alpha=alpha, target_modules="all-linear", lora_dropout=0.0)
    ao.target.add_adapter(STEER_ADAPTER, config)
    return [p for n, p in ao.target.named_parameters() if f".{STEER_ADAPTER}." in n]


def save_steering_lora(ao: ActivationOracle, result: Any, directory: str | Path) -> Path:
    """Save the steering LoRA of ``result`` (a LoRA method's ``SteeringResult``) in peft format,
    flat directory, plus ``steering.json`` metadata."""
    if result.adapter is None:
        raise OracleInputError("this result is a steering vector; save it with SteeringVector")
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    ao.target.save_pretrained(str(path), selected_adapters=[result.adapter])
    nested = path / result.adapter
    if nested.is_dir():
        for item in nested.iterdir():
            item.replace(path / item.name)
        nested.rmdir()
    _portable_base(path)
    meta = {
        **asdict(result.config),
        "layer": result.layer,
        "read_layer": result.read_layer,
        "losses": result.losses,
        "answer_nll": result.answer_nll,
        "kl": result.kl,
    }
    (path / "steering.json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def _portable_base(path: Path) -> None:
    """peft records the base model's load path in the adapter config and model card; a local
    base is named by its directory alone, so that a saved adapter names no path of the machine
    it was made on (the adapter is loaded onto an oracle's target, never by that path)."""
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        return
    data = json.loads(config_file.read_text())
    base = data.get("base_model_name_or_path")
    if not base or not Path(base).is_absolute():
        return
    shown = Path(base).name
    data["base_model_name_or_path"] = shown
    config_file.write_text(json.dumps(data, indent=2) + "\n")
    card = path / "README.md"
    if card.is_file():
        card.write_text(card.read_text().replace(base, shown))


def load_steering_lora(ao: ActivationOracle, directory: str | Path) -> ActivationOracle:
    """Load a steering LoRA saved by :func:`save_steering_lora` onto ``ao``'s target, as the
    adapter ``steer``; returns the oracle to use (a new object when the target was no peft model).
    """
    from peft import PeftModel

    path = Path(directory)
    if not (path / "adapter_config.json").is_file():
        raise OracleInputError(f"{str(path)!r} holds no steering LoRA (no adapter_config.json)")
    if isinstance(ao.target, PeftModel):
        if STEER_ADAPTER in ao.target.peft_config:
            ao.target.delete_adapter(STEER_ADAPTER)
        ao.target.load_adapter(str(path), adapter_name=STEER_ADAPTER, is_trainable=False)
        return ao
    peft_model = PeftModel.from_pretrained(ao.target, str(path), adapter_name=STEER_ADAPTER)
    peft_model.eval()
    from oracle.oracle import ActivationOracle

    return ActivationOracle(peft_model, ao.tokenizer, ao.config)


@contextmanager
def scaled_adapter(model: nn.Module, scale: float, name: str = STEER_ADAPTER) -> Iterator[None]:
    """While inside, the LoRA ``name`` on ``model`` adds ``scale`` times its update (B A x).

    The steering LoRA's counterpart of a vector's scale: peft's per-adapter ``scaling`` of each
    LoRA layer is multiplied, and restored on exit, even after an exception.
    """
    if not math.isfinite(scale):
        raise OracleInputError(f"scale must be a finite number, got {scale!r}")
    # peft LoRA layers keep {adapter: scaling}; attention modules have a float "scaling" too
    layers = [
        m for m in model.modules() if isinstance(getattr(m, "scaling", None), dict)
        and name in m.scaling
    ]  # fmt: skip
    if not layers:
        raise OracleInputError(f"the target has no LoRA named {name!r}")
    saved = [m.scaling[name] for m in layers]
    try:
        for m in layers:
            m.scaling[name] = m.scaling[name] * scale
        yield
    finally:
        for m, value in zip(layers, saved, strict=True):
            m.scaling[name] = value
