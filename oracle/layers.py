"""Find the decoder blocks and the token embedding of a Hugging Face causal LM.

A registry maps ``config.model_type`` to the attribute path of the block list, so that a new
family is one entry, not a branch. Unknown families fail loudly, naming the class.
"""

from __future__ import annotations

import torch
from torch import nn

from oracle.errors import OracleInputError, UnsupportedArchitectureError

# model_type -> dotted attribute path (from the causal-LM object) of the decoder block list.
LAYER_PATHS: dict[str, str] = {
    "llama": "model.layers",
    "mistral": "model.layers",
    "qwen2": "model.layers",
    "qwen3": "model.layers",
    "qwen3_moe": "model.layers",
    "gemma": "model.layers",
    "gemma2": "model.layers",
    "gemma3_text": "model.layers",
    "gemma3": "model.language_model.layers",
    "phi": "model.layers",
    "phi3": "model.layers",
    "gpt2": "transformer.h",
    "gpt_neox": "gpt_neox.layers",
}


def _unwrap(model: nn.Module) -> nn.Module:
    """Strip peft wrappers (PeftModel -> LoraModel -> the transformers model)."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTuner

    inner = model
    if isinstance(inner, PeftModel):
        inner = inner.base_model
    if isinstance(inner, BaseTuner):
        inner = inner.model
    return inner


def _resolve(obj: object, path: str) -> object | None:
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def model_type(model: nn.Module) -> str:
    return str(getattr(_unwrap(model).config, "model_type", type(model).__name__))


def get_decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of decoder blocks of ``model`` (peft wrappers are looked through).

    >>> get_decoder_layers(llama)[1]   # LlamaDecoderLayer
    """
    inner = _unwrap(model)
    mtype = getattr(getattr(inner, "config", None), "model_type", None)
    path = LAYER_PATHS.get(str(mtype))
    layers = _resolve(inner, path) if path else None
    if not isinstance(layers, nn.ModuleList):
        known = ", ".join(sorted(LAYER_PATHS))
        raise UnsupportedArchitectureError(
            f"cannot find the decoder layers of {type(inner).__name__} "
            f"(model_type={mtype!r}); supported model types: {known}"
        )
    return layers


def num_layers(model: nn.Module) -> int:
    return len(get_decoder_layers(model))


def hidden_size(model: nn.Module) -> int:
    config = _unwrap(model).config
    text_config = getattr(config, "text_config", None) or config
    for name in ("hidden_size", "n_embd", "d_model"):
        value = getattr(text_config, name, None)
        if isinstance(value, int):
            return value
    raise UnsupportedArchitectureError(f"no hidden size in the config of {type(model).__name__}")


def get_embedding(model: nn.Module) -> nn.Module:
    """The token-embedding module; its output is what ``inputs_embeds`` would replace."""
    return _unwrap(model).get_input_embeddings()


def check_layer(model: nn.Module, layer: int) -> int:
    """Validate a 0-based block index (negative counts from the end) and return it normalised."""
    return check_layer_index(num_layers(model), layer)


def check_layer_index(n: int, layer: int) -> int:
    """:func:`check_layer` for a model of ``n`` blocks, without looking the blocks up."""
    if not isinstance(layer, int) or isinstance(layer, bool):
        raise OracleInputError(f"layer must be an integer, got {layer!r}")
    if not -n <= layer < n:
        raise OracleInputError(
            f"layer {layer} is out of range: the model has {n} blocks (0..{n - 1})"
        )
    return layer % n


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device
