"""Read a JSON file or raise a clear error naming it (the CLI and HTTP show it as a 4xx)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from oracle.errors import OracleError, OracleInputError


def read_json(
    path: str | Path, what: str = "file", error: type[OracleError] = OracleInputError
) -> Any:
    """The JSON value in ``path``; ``error`` when the file is missing or not valid JSON,
    naming it as ``what`` (e.g. ``"messages file"``)."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} {str(path)!r} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not valid JSON: {exc}") from None
    except UnicodeDecodeError:
        raise error(f"{what} {str(path)!r} is not UTF-8 text") from None
