"""Engines behind one interface; ``create_engine("hf" | "vllm", ...)`` picks one by name."""

from __future__ import annotations

import importlib

from oracle.engines.base import Answer, AnswerRequest, CaptureRequest, Engine
from oracle.errors import OracleInputError

# name -> "module:Class"; imported lazily so that vLLM is needed only when asked for.
ENGINES: dict[str, str] = {
    "hf": "oracle.engines.hf:HFEngine",
    "vllm": "oracle.engines.vllm.engine:VLLMEngine",
}


def create_engine(
    name: str, target: str | None = None, oracle: str | None = None, **kwargs
) -> Engine:
    if name not in ENGINES:
        raise OracleInputError(f"unknown engine {name!r}; choose from {sorted(ENGINES)}")
    module_name, _, class_name = ENGINES[name].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise OracleInputError(f"engine {name!r} is not available: {exc}") from exc
    return getattr(module, class_name).load(target, oracle, **kwargs)


__all__ = ["Answer", "AnswerRequest", "CaptureRequest", "Engine", "ENGINES", "create_engine"]
