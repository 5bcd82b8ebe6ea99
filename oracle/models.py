"""Load a causal LM and its tokenizer by hub id, local path, GGUF file or known name.

- a hub id or a transformers folder: ``AutoModelForCausalLM.from_pretrained``;
- a ``.gguf`` file (llama.cpp's format; needs the ``gguf`` package): transformers dequantises
  it on load; :func:`convert_gguf` writes it once as a normal folder, which loads faster;
- a known name (``smollm2-135m``, see ``oracle.known_models``): its fetched, converted folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from oracle.errors import OracleInputError
from oracle.known_models import resolve_model
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


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX), as torch's oneDNN
    reports it. There a bf16 matmul runs several times faster than fp32 (about 8x on one core
    with AMX); elsewhere bf16 is emulated and slower, so ``auto`` stays fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_dtype(dtype: str | torch.dtype | None, device: str) -> torch.dtype:
    """The weights' dtype: ``auto`` is bf16 on a GPU and on a CPU with native bf16
    (:func:`cpu_has_fast_bf16`), fp32 otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.startswith("cuda") or (device.startswith("cpu") and cpu_has_fast_bf16()):
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise OracleInputError(f"unknown dtype {dtype!r}; choose from {sorted(DTYPES)}")
    return DTYPES[dtype]  # type: ignore[return-value]


def resolve_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def is_gguf(name_or_path: str | Path) -> bool:
    """Whether the string names a GGUF file (by its extension)."""
    return str(name_or_path).lower().endswith(".gguf")


def _gguf_location(path: str | Path) -> tuple[str, str]:
    """``(folder, file name)`` of an existing GGUF file, as transformers takes them."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise OracleInputError(f"GGUF file {str(path)!r} does not exist")
    try:
        import gguf  # noqa: F401  (transformers needs it to read the file)
    except ImportError:
        raise OracleInputError(
            "loading a .gguf file needs the 'gguf' package: pip install 'activation-oracle[gguf]'"
        ) from None
    return str(path.parent), path.name


def load_config(name_or_path: str):
    """The model's transformers config alone (no weights), for a path, GGUF file or name."""
    from transformers import AutoConfig

    name_or_path = resolve_model(name_or_path)
    if is_gguf(name_or_path):
        folder, name = _gguf_location(name_or_path)
        return AutoConfig.from_pretrained(folder, gguf_file=name)
    return AutoConfig.from_pretrained(name_or_path)


def load_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    name_or_path = resolve_model(name_or_path)
    if is_gguf(name_or_path):
        folder, name = _gguf_location(name_or_path)
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    else:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token_id is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str,
    dtype: str | torch.dtype | None = "auto",
    device: str | None = "auto",
    attn_implementation: str | None = None,
):
    """Load ``(model, tokenizer)``; a local directory or GGUF file never touches the network.

    The model is put in eval mode; its decoder layers are looked up once so that an
    unsupported architecture fails here, with its class named. ``attn_implementation``
    (``eager``, ``sdpa``; None = transformers' choice) is passed to transformers.
    """
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    name_or_path = resolve_model(name_or_path)
    if is_gguf(name_or_path):
        model = load_gguf_model(name_or_path, torch_dtype)
        tokenizer = load_tokenizer(name_or_path)
        model.to(device)
        model.eval()
        get_decoder_layers(model)
        return model, tokenizer
    local = Path(name_or_path).expanduser()
    if not local.exists() and (name_or_path.startswith((".", "/")) or name_or_path.count("/") > 1):
        raise OracleInputError(f"model path {name_or_path!r} does not exist")
    source = str(local) if local.exists() else name_or_path
    log.info("loading %s (%s on %s)", source, torch_dtype, device)
    tokenizer = load_tokenizer(source)
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **extra)
    model.to(device)
    model.eval()
    get_decoder_layers(model)
    return model, tokenizer


def load_gguf_model(path: str | Path, dtype: torch.dtype = torch.float32):
    """A GGUF file as a transformers model (dequantised to ``dtype``), in eval mode.

    The ``quantization_config`` that transformers records for GGUF sources is dropped: the
    weights are plain tensors after loading, and without it the model's fingerprint equals
    that of the folder :func:`convert_gguf` writes from the same file.
    """
    folder, name = _gguf_location(path)
    log.info("loading GGUF %s/%s (dequantising to %s)", folder, name, dtype)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=dtype)
    if hasattr(model.config, "quantization_config"):
        delattr(model.config, "quantization_config")
    model.eval()
    return model


def convert_gguf(path: str | Path, out_dir: str | Path, dtype: torch.dtype = torch.float32) -> Path:
    """Write a GGUF file as a normal transformers folder (safetensors, config, tokenizer with its
    chat template); its logits equal those of the GGUF-loaded model.

    ``save_pretrained`` on the GGUF-loaded model itself can fail, so its weights go into a
    fresh model of the same class, built from the config without ``quantization_config``.
    """
    source = load_gguf_model(path, dtype)
    fresh = type(source)(source.config)
    fresh.load_state_dict(source.state_dict())
    fresh.to(dtype)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fresh.save_pretrained(out)
    load_tokenizer(str(path)).save_pretrained(out)
    return out
