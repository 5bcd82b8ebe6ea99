"""Load a causal LM and its tokenizer by hub id or local path, with dtype and device."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from oracle.errors import OracleInputError
from oracle.layers import get_decoder_layers

log = logging.getLogger(__name__)

DTYPES = {
    "auto": None,
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    if dtype not in DTYPES:
        raise OracleInputError(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
    return DTYPES[dtype]  # type: ignore[return-value]


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str,
    dtype: str | torch.dtype | None = "auto",
    device: str | None = "auto",
):
    """Load ``(model, tokenizer)``; a local directory never touches the network.

    The model is put in eval mode; its decoder layers are looked up once so that an
    unsupported architecture fails here, with its class named.
    """
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    local = Path(name_or_path).expanduser()
    if not local.exists() and (name_or_path.startswith((".", "/")) or name_or_path.count("/") > 1):
        raise OracleInputError(f"model path {name_or_path!r} does not exist")
    source = str(local) if local.exists() else name_or_path
    log.info("loading %s (%s on %s)", source, torch_dtype, device)
    tokenizer = load_tokenizer(source)
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype)
    model.to(device)
    model.eval()
    get_decoder_layers(model)
    return model, tokenizer
