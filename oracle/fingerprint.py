"""A fingerprint of a base model: its config, its tokenizer and a checksum of its weights.

An oracle adapter is only meaningful on the checkpoint it was trained on; a different
checkpoint of the same shape would load without complaint and answer nonsense. The weight
checksum hashes, for every parameter, its name, shape and a fixed sample of its values rounded
to bfloat16 (so that a float32 and a bfloat16 load of the same checkpoint agree).
"""

from __future__ import annotations

import hashlib
import json

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from oracle.layers import _unwrap

_VOLATILE_CONFIG_KEYS = {
    "_name_or_path",
    "transformers_version",
    "torch_dtype",
    "dtype",
    "_attn_implementation",
    "_attn_implementation_autoset",
    "use_cache",
    "architectures",
}
_SAMPLE = 4096


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def config_hash(model: nn.Module) -> str:
    config = _unwrap(model).config.to_dict()
    kept = {k: v for k, v in config.items() if k not in _VOLATILE_CONFIG_KEYS}
    return _sha(json.dumps(kept, sort_keys=True, default=str).encode())


def tokenizer_hash(tokenizer: PreTrainedTokenizerBase) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    payload = {"vocab": vocab, "template": getattr(tokenizer, "chat_template", None)}
    return _sha(json.dumps(payload, default=str).encode())


@torch.no_grad()
def weights_hash(model: nn.Module) -> str:
    digest = hashlib.sha256()
    params = {
        name.replace("base_layer.", ""): param
        for name, param in _unwrap(model).named_parameters()
        if "lora_" not in name
    }
    for name in sorted(params):
        param = params[name]
        flat = param.detach().reshape(-1)
        sample = (
            torch.cat([flat[:_SAMPLE], flat[-_SAMPLE:]]) if flat.numel() > 2 * _SAMPLE else flat
        )
        bits = sample.to("cpu", torch.bfloat16).view(torch.int16).numpy().tobytes()
        digest.update(name.encode())
        digest.update(str(tuple(param.shape)).encode())
        digest.update(bits)
    return digest.hexdigest()


def fingerprint(model: nn.Module, tokenizer: PreTrainedTokenizerBase) -> dict[str, str]:
    return {
        "config": config_hash(model),
        "tokenizer": tokenizer_hash(tokenizer),
        "weights": weights_hash(model),
    }
