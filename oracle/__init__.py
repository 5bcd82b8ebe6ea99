"""Activation oracles: ask a language model's activations questions in plain language.

Names are imported lazily, so that ``import oracle`` (and ``oracle --help``) stays fast.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ActivationOracle": "oracle.oracle",
    "Capture": "oracle.capture",
    "capture": "oracle.capture",
    "OracleConfig": "oracle.config",
    "InjectionSpec": "oracle.inject",
    "inject": "oracle.inject",
    "TargetInput": "oracle.inputs",
    "OracleError": "oracle.errors",
    "OracleInputError": "oracle.errors",
    "OracleConfigError": "oracle.errors",
    "FingerprintMismatchError": "oracle.errors",
    "UnsupportedArchitectureError": "oracle.errors",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oracle' has no attribute {name!r}")
