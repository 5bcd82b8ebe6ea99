"""Named worlds (``--world toy|smol``): which models the commands load, and the world the
server says it serves (``/v1/models`` and the page)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from oracle.errors import OracleInputError
from oracle.worlds import resolve, world_of
from serving.app import create_app
from serving.settings import ServeSettings
from tests.helpers import make_oracle_dir


def test_resolve_fills_in_only_what_is_not_given(tmp_path):
    from oracle.defaults import default_oracle

    toy = str(default_oracle())
    assert resolve(None, None, None) == (None, toy)  # nothing given: the toy world
    assert resolve("toy", None, None) == (None, toy)
    assert resolve("toy", "my/model", None) == ("my/model", toy)  # the world's oracle on it
    assert resolve(None, "my/model", None) == ("my/model", None)  # no oracle: training-free
    assert resolve("smol", "t", str(tmp_path)) == ("t", str(tmp_path))  # both given: theirs
    with pytest.raises(OracleInputError, match="unknown world 'nope'"):
        resolve("nope", "t", str(tmp_path))


def test_smol_world_without_its_oracle_says_how_to_make_it(tmp_path, monkeypatch):
    import shutil

    import worlds.smol.world as smol

    shutil.copy(smol.SMOL_WORLD / "world.json", tmp_path / "world.json")  # the oracle not built
    monkeypatch.setattr(smol, "SMOL_WORLD", tmp_path)
    with pytest.raises(OracleInputError, match="oracle smol-world build"):
        resolve("smol", None, None)


def test_world_of_names_the_shipped_oracles_only(tmp_path):
    from oracle.defaults import default_oracle
    from worlds.smol.world import SMOL_WORLD

    assert world_of(None, None, None) == "toy"
    assert world_of(None, None, str(default_oracle())) == "toy"
    assert world_of(None, None, str(SMOL_WORLD / "oracle")) == "smol"
    assert world_of(None, None, str(tmp_path)) is None  # a user's own oracle
    assert world_of(None, "other/target", str(default_oracle())) is None  # on another target
    assert world_of("smol", None, None) == "smol"


def test_cli_rejects_an_unknown_world():
    from oracle_cli import app, load_commands

    load_commands()
    result = CliRunner().invoke(
        app, ["ask", "--world", "nope", "--prompt", "Hi", "--question", "Q?"]
    )
    assert result.exit_code != 0
    assert "unknown world 'nope'" in str(result.exception) + result.output


def test_serve_refuses_an_unknown_world_before_loading(capsys):
    from oracle_cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--world", "nope"])
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert "--world: unknown world 'nope'" in err and "toy" in err and "smol" in err


def test_server_names_the_world_it_serves(toy_hf_engine, tmp_path):
    with TestClient(create_app(ServeSettings(world="toy"), engine=toy_hf_engine)) as client:
        assert client.get("/v1/models").json()["world"] == "toy"
        oracle_card = client.get("/v1/models").json()["data"][1]
        assert oracle_card["id"] == "toy_world"
        page = client.get("/").text
        assert "World: <b>toy</b>" in page and "<!--served-->" not in page
    base, oracle = make_oracle_dir(tmp_path, "llama")
    settings = ServeSettings(target=str(base), oracle=str(oracle))
    with TestClient(create_app(settings, engine=toy_hf_engine)) as client:
        assert client.get("/v1/models").json()["world"] is None
        page = client.get("/").text
        assert "your own target and oracle" in page and str(base) not in page
