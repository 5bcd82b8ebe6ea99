"""A steering vector on disk: ``VEC.safetensors`` (the tensor) plus ``VEC.json`` (its metadata).

The JSON sidecar holds the steering layer, the default scale, the question and answer it was
optimised for, the oracle's read layer, the settings and the loss curve, so that
``oracle generate --steer VEC.safetensors`` needs nothing else.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from oracle.errors import OracleInputError

TENSOR_KEY = "steering_vector"
# where a vector is added: every position; the reply only (from the position that predicts its
# first token on); or that one position alone ("first", the reply's start, read on through
# attention)
APPLIES = ("all", "reply", "first")
FORMAT_VERSION = 1


def check_apply(apply: str, where: str = "") -> None:
    """Raise :class:`OracleInputError` unless ``apply`` is one of :data:`APPLIES`."""
    if apply not in APPLIES:
        prefix = f"{where}: " if where else ""
        raise OracleInputError(f"{prefix}apply must be one of {APPLIES}, got {apply!r}")


@dataclass
class SteeringVector:
    """A vector (d_model,) added at the output of block ``layer``, times ``scale``."""

    vector: torch.Tensor
    layer: int
    scale: float = 1.0
    question: str = ""
    answer: str = ""
    read_layer: int | None = None
    base_model: str | None = None
    losses: list[float] = field(default_factory=list)
    apply: str = "all"  # one of APPLIES
    settings: dict = field(default_factory=dict)

    def metadata(self) -> dict:
        meta = asdict(self)
        meta.pop("vector")
        meta["d_model"] = int(self.vector.shape[0])
        meta["norm"] = float(self.vector.norm())
        meta["format_version"] = FORMAT_VERSION
        return meta

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (.safetensors) and the ``.json`` sidecar beside it; returns ``path``."""
        path = Path(path)
        if path.suffix != ".safetensors":
            raise OracleInputError(f"the output file must end in .safetensors, got {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        vector = self.vector.detach().float().cpu().contiguous()
        save_file({TENSOR_KEY: vector}, str(path))
        path.with_suffix(".json").write_text(json.dumps(self.metadata(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> SteeringVector:
        """Read a vector saved by :meth:`save`; clear errors for a missing or malformed file."""
        path = Path(path)
        if not path.is_file():
            raise OracleInputError(f"steering vector file {str(path)!r} does not exist")
        try:
            tensors = load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise OracleInputError(f"{str(path)!r} is not a safetensors file: {exc}") from None
        if TENSOR_KEY not in tensors:
            raise OracleInputError(f"{str(path)!r} holds no tensor named {TENSOR_KEY!r}")
        vector = tensors[TENSOR_KEY]
        if vector.ndim != 1:
            raise OracleInputError(
                f"{str(path)!r}: a steering vector must be 1-D, got shape {tuple(vector.shape)}"
            )
        sidecar = path.with_suffix(".json")
        if not sidecar.is_file():
            raise OracleInputError(f"{str(sidecar)!r} (the vector's metadata) does not exist")
        try:
            meta = json.loads(sidecar.read_text())
        except json.JSONDecodeError as exc:
            raise OracleInputError(f"{sidecar} is not valid JSON: {exc}") from None
        if not isinstance(meta.get("layer"), int):
            raise OracleInputError(f"{sidecar} lacks an integer 'layer'")
        scale = float(meta.get("scale", 1.0))
        if not math.isfinite(scale):
            raise OracleInputError(f"{sidecar}: scale is not finite")
        apply = meta.get("apply", "all")
        check_apply(apply, str(sidecar))
        return cls(
            vector=vector,
            layer=meta["layer"],
            scale=scale,
            question=meta.get("question", ""),
            answer=meta.get("answer", ""),
            read_layer=meta.get("read_layer"),
            base_model=meta.get("base_model"),
            losses=list(meta.get("losses", [])),
            settings=dict(meta.get("settings", {})),
            apply=apply,
        )
