"""Options and helpers shared by CLI commands."""

from __future__ import annotations

from pathlib import Path

from oracle.errors import OracleInputError
from oracle.inputs import TargetInput
from oracle.jsonio import read_json


def parse_layers(text: str | None) -> list[int] | None:
    if text is None or text == "":
        return None
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise OracleInputError(f"--layers takes comma-separated integers, got {text!r}") from None


def read_target_input(
    prompt: str | None, messages_file: Path | None, add_generation_prompt: bool = False
) -> TargetInput:
    if (prompt is None) == (messages_file is None):
        raise OracleInputError("give exactly one of --prompt or --messages-file")
    if prompt is not None:
        return TargetInput(prompt=prompt)
    messages = read_json(messages_file, "messages file")
    if isinstance(messages, dict) and "messages" in messages:
        messages = messages["messages"]
    return TargetInput(messages=messages, add_generation_prompt=add_generation_prompt)
