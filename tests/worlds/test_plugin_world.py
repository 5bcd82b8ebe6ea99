"""A third world joins by registering, touching no package of the project: this test's folder
holds its manifest, target, oracle and suite, and a distribution's metadata on ``sys.path``
registers it in the entry-point group ``oracle.worlds`` (as an installed package would). Then
``oracle ask``, the server and ``oracle eval`` run on it by name. The shipped worlds' manifests
agree with their oracles."""

from __future__ import annotations

import json
import sys

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from evals.suite_format import write_suite_file
from evals.synthetic import synthetic_items
from oracle.worlds import MANIFEST, WorldSpec, get_world, world_names, worlds
from tests.helpers import make_oracle_dir


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    """(the folder on sys.path that registers the world, the world's own folder)."""
    root = tmp_path_factory.mktemp("plugin")
    folder = root / "tiny_world"
    make_oracle_dir(folder, "llama", read_layers=(1,))  # folder/base, folder/oracle
    items = [
        i for i in synthetic_items(0)
        if i.family == "persona" and (i.split == "train" or i.key.endswith(("1", "2", "3")))
    ]  # fmt: skip
    write_suite_file(items, folder / "suite.jsonl")
    manifest = {
        "name": "tiny", "description": "a tiny random world, registered by a test",
        "target": {"path": "base"}, "oracle": "oracle", "suites": ["suite.jsonl"],
        "read_layers": [1], "positions": "non_system", "build": "tests/worlds/test_plugin_world.py",
    }  # fmt: skip
    (folder / MANIFEST).write_text(json.dumps(manifest))
    site = root / "site"
    site.mkdir()
    (site / "tiny_world_plugin.py").write_text(
        f"from pathlib import Path\n\nFOLDER = Path({str(folder)!r})\n"
    )
    dist = site / "tiny_world_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: tiny-world-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[oracle.worlds]\ntiny = tiny_world_plugin:FOLDER\n")
    return site, folder


@pytest.fixture
def registered(tiny_world, monkeypatch):
    site, folder = tiny_world
    monkeypatch.syspath_prepend(str(site))
    yield folder
    sys.modules.pop("tiny_world_plugin", None)


def test_the_registry_finds_it_by_its_entry_point_alone(registered):
    assert {"toy", "smol", "tiny"} <= set(world_names())
    tiny = get_world("tiny")
    assert tiny.oracle_dir() == registered / "oracle"
    assert tiny.suite_files() == [registered / "suite.jsonl"]
    assert tiny.target() == str(registered / "base")
    assert "tiny" in worlds()


def test_without_its_registration_it_is_unknown(tiny_world):
    assert "tiny" not in world_names()


def test_ask_by_name(registered):
    from oracle_cli import app, load_commands

    load_commands()
    args = ["ask", "--world", "tiny", "--prompt", "Hello there", "--device", "cpu"]
    result = CliRunner().invoke(
        app, [*args, "--question", "Is the assistant a pirate?", "--max-new-tokens", "3", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output[result.output.index("{") :])
    assert payload["layer"] == 1 and len(payload["answers"]) == 1


def test_serve_by_name(registered):
    from serving.app import create_app
    from serving.service import load_engine
    from serving.settings import ServeSettings

    settings = ServeSettings(world="tiny", device="cpu")
    settings.validate()
    engine = load_engine(settings)
    try:
        with TestClient(create_app(settings, engine=engine)) as client:
            models = client.get("/v1/models").json()
            assert models["world"] == "tiny" and models["data"][1]["id"] == "tiny_world"
            assert "World: <b>tiny</b> (a tiny random world" in client.get("/").text
            body = {"prompt": "Hello there", "questions": ["Is the assistant a pirate?"]}
            r = client.post("/v1/query", json={**body, "max_tokens": 3})
            assert r.status_code == 200, r.text
    finally:
        engine.close()


def test_eval_by_name(registered, tmp_path):
    from evals.evaluate import run_eval
    from evals.options import EvalOptions, run_spec

    opts = EvalOptions(
        world="tiny", out=str(tmp_path), feature_cache="none", skip_ablations=True,
        max_new_tokens=3, device="cpu",
    )  # fmt: skip
    spec = run_spec(opts, show_progress=False)
    assert spec.suite_files == [str(registered / "suite.jsonl")]
    assert spec.oracle == str(registered / "oracle")
    results, paths = run_eval(spec)
    assert list(results["suites"]) == ["persona"] and paths["html"].is_file()


@pytest.mark.parametrize("name", ["toy", "smol"])
def test_a_shipped_manifest_agrees_with_its_oracle(name):
    """read layers, positions and the target's fingerprint: the manifest says what the oracle
    was trained with (a rebuilt oracle with a stale manifest fails here)."""
    world = get_world(name)
    config_path = world.folder / world.oracle / "oracle_config.json"
    if not config_path.is_file():
        pytest.skip(f"the {name} world's oracle is not in this checkout")
    config = json.loads(config_path.read_text())
    assert list(world.read_layers) == config["read_layers"]
    assert world.positions == config["positions"]
    assert world.fingerprint == config["fingerprint"]


def test_a_bad_manifest_is_a_clear_error(tmp_path):
    from oracle.errors import OracleInputError

    (tmp_path / MANIFEST).write_text(json.dumps({"name": "x", "target": {}}))
    with pytest.raises(OracleInputError, match="exactly one of 'model' or 'path'"):
        WorldSpec.from_folder(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(OracleInputError, match="cannot read the world manifest"):
        WorldSpec.from_folder(tmp_path)


def test_a_build_syncs_the_manifest_with_its_new_oracle(tiny_world, tmp_path):
    """After a build ships a new oracle, sync_manifest makes the manifest say what it reads."""
    import shutil

    from oracle.worlds import sync_manifest

    _, folder = tiny_world
    copy = tmp_path / "world"
    shutil.copytree(folder, copy)
    config_path = copy / "oracle" / "oracle_config.json"
    config = json.loads(config_path.read_text())
    config.update(read_layers=[2], fingerprint={"weights": "new"})
    config_path.write_text(json.dumps(config))
    sync_manifest(copy)
    world = WorldSpec.from_folder(copy)
    assert world.read_layers == (2,) and world.fingerprint == {"weights": "new"}
    assert world.description.startswith("a tiny random world")  # the rest kept
