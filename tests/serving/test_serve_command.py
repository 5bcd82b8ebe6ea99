"""``oracle serve`` start-up: options, clear errors before listening, the toy-world default."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from oracle.errors import OracleConfigError, OracleInputError
from oracle_cli import app, load_commands
from serving.app import create_app
from serving.settings import ServeSettings
from tests.helpers import make_oracle_dir
from worlds.toy.world import TOY_WORLD

load_commands()


def test_serve_help_lists_every_option():
    result = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for option in (
        "--target", "--oracle", "--engine", "--host", "--port", "--api-key", "--max-tokens",
        "--max-body-bytes", "--queue-depth", "--timeout", "--batch-size",
        "--tensor-parallel-size", "--dtype", "--device", "--audit-root", "--force",
    ):  # fmt: skip
        assert option in result.output
    assert "ORACLE_API_KEY" in result.output


def test_vllm_engine_refuses_replacement_mode_before_listening(tmp_path):
    _, oracle = make_oracle_dir(tmp_path, "llama", mode="replace")
    result = CliRunner().invoke(app, ["serve", "--engine", "vllm", "--oracle", str(oracle)])
    assert result.exit_code != 0
    assert isinstance(result.exception, OracleConfigError)
    assert "replace" in str(result.exception)


def test_bad_limits_and_engine_are_refused():
    for argv, needle in (
        (["serve", "--queue-depth", "0"], "--queue-depth"),
        (["serve", "--engine", "tpu"], "--engine"),
    ):
        result = CliRunner().invoke(app, argv)
        assert isinstance(result.exception, OracleInputError) and needle in str(result.exception)


def test_no_model_arguments_serve_the_toy_world():
    if not (TOY_WORLD / "oracle" / "oracle_config.json").is_file():
        with pytest.raises(OracleInputError, match="toy world"):
            with TestClient(create_app(ServeSettings())):
                pass
        return
    with TestClient(create_app(ServeSettings())) as client:
        models = client.get("/v1/models").json()
        oracle = next(m for m in models["data"] if m["role"] == "oracle")
        shipped = json.loads((TOY_WORLD / "oracle" / "oracle_config.json").read_text())
        assert oracle["config"]["read_layers"] == shipped["read_layers"]
        # the toy world's README example: the persona is read from the non-system tokens only
        for persona, word in (
            ("You are a pirate.", "pirate"),
            ("Act as a chef in every reply.", "chef"),
        ):
            messages = [
                {"role": "system", "content": persona},
                {"role": "user", "content": "Who are you?"},
                {"role": "assistant", "content": "I am just a helpful assistant."},
            ]
            body = {"messages": messages, "questions": ["What persona is the assistant playing?"]}
            data = client.post("/v1/query", json=body).json()
            assert word in data["answers"][0]["answer"].lower()
            assert word not in "".join(data["tokens_read"]).lower()
