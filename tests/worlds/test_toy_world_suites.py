"""The toy world's suites are files (``data/toy_world/suites``, named in its manifest) that the
generator writes: the shipped files are what the writer makes today, a world folder gets its
files and manifest entry from the writer, and ``oracle eval`` reads nothing else."""

from __future__ import annotations

import json
import shutil

from evals.suite_format import load_suite_file
from oracle.worlds import WorldSpec, get_world
from worlds.toy.suite import FAMILIES, suite_paths, toy_world_items, write_suites
from worlds.toy.world import TOY_WORLD


def test_the_manifest_names_one_file_per_family_in_order():
    world = get_world("toy")
    assert world.suite_files() == suite_paths(TOY_WORLD)
    assert [p.name for p in world.suite_files()] == [f"{f}.jsonl.xz" for f in FAMILIES]
    assert world.ablations_dir() == TOY_WORLD / "ablations"


def test_the_shipped_persona_file_is_what_the_generator_writes_today():
    shipped = [i for i in load_suite_file(suite_paths(TOY_WORLD)[0]) if i.split == "test"]
    fresh = [i for i in toy_world_items(["persona"], n_train=1) if i.split == "test"]
    assert len(shipped) == 1200 and len({i.group for i in shipped}) == 200
    assert [i.to_dict() for i in shipped] == [i.to_dict() for i in fresh]


def test_the_writer_fills_a_world_folder_and_its_manifest(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    for name in ("spec.json", "user_bank.json", "world.json", "build_config.json"):
        shutil.copy(TOY_WORLD / name, folder / name)
    shutil.copytree(TOY_WORLD / "target", folder / "target")
    manifest = json.loads((folder / "world.json").read_text())
    manifest["suites"] = []
    (folder / "world.json").write_text(json.dumps(manifest))

    files = write_suites(folder, n_test=4, n_train=30)
    assert [p.name for p in files] == [f"{f}.jsonl.xz" for f in FAMILIES]
    spec = WorldSpec.from_folder(folder)
    assert spec.suite_files() == files  # the manifest now names them
    for family, path in zip(FAMILIES, files, strict=True):
        items = load_suite_file(path)
        assert {i.family for i in items} == {family}
        assert len({i.group for i in items if i.split == "test"}) == 4
        assert any(i.split == "train" for i in items)
