"""A steering vector on disk: ``VEC.safetensors`` (the tensor) plus ``VEC.json`` (its metadata).

The JSON sidecar holds the steering layer, the scale and apply mode to use it with (chosen on
validation prompts, with the grid that chose them: ``choice``), the question and answer it was
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
from oracle.jsonio import read_json
from oracle.steering.apply import check_apply

TENSOR_KEY = "steering_vector"
FORMAT_VERSION = 1


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
    apply: str = "all"  # a mode of oracle.steering.apply
    settings: dict = field(default_factory=dict)
    # how the scale and apply mode were chosen (oracle.steering.choose.UseChoice.to_dict())
    choice: dict | None = None

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
        meta = read_json(sidecar, "the vector's metadata")
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
            choice=meta.get("choice"),
        )
