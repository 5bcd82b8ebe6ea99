"""Activation oracles: ask a language model's activations questions in plain language."""

from oracle.capture import Capture, capture
from oracle.config import OracleConfig
from oracle.errors import (
    FingerprintMismatchError,
    OracleConfigError,
    OracleError,
    OracleInputError,
    UnsupportedArchitectureError,
)
from oracle.inject import InjectionSpec, inject
from oracle.inputs import TargetInput
from oracle.oracle import ActivationOracle

__all__ = [
    "ActivationOracle",
    "Capture",
    "FingerprintMismatchError",
    "InjectionSpec",
    "OracleConfig",
    "OracleConfigError",
    "OracleError",
    "OracleInputError",
    "TargetInput",
    "UnsupportedArchitectureError",
    "capture",
    "inject",
]
__version__ = "0.1.0"
