"""Errors raised by the oracle core.

Every error a user can cause is an :class:`OracleInputError` (a ``ValueError``) whose message
names the problem, so that the CLI prints it and the HTTP service maps it to a 4xx.
"""

from __future__ import annotations


class OracleError(Exception):
    """Base class of every error the project raises on purpose."""


class OracleInputError(OracleError, ValueError):
    """Bad input from the caller: the message says which field and why."""


class UnsupportedArchitectureError(OracleError, TypeError):
    """The model's class is not one whose decoder layers we know how to find."""


class OracleConfigError(OracleError, ValueError):
    """An oracle directory or its ``oracle_config.json`` is missing or invalid."""


class FingerprintMismatchError(OracleError, ValueError):
    """The oracle was trained on another checkpoint than the one it is loaded with."""
