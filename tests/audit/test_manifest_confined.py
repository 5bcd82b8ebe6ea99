"""An activation log's manifest.json names its shard files; a reader must open them inside
the log directory only (issue 18: a manifest pointing at shards elsewhere was read, also by
the server for a log under its audit root)."""

from __future__ import annotations

import json

import pytest

from audit.logformat import MANIFEST, ActivationLog
from audit.synthetic import write_synthetic_log
from oracle.errors import OracleInputError


def point_shard(log_dir, **paths) -> None:
    """Rewrite the first shard's entry of ``log_dir``'s manifest with ``paths``."""
    path = log_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["shards"][0].update(paths)
    path.write_text(json.dumps(manifest))


@pytest.fixture
def logs(tmp_path):
    inside, outside = tmp_path / "root" / "log", tmp_path / "elsewhere"
    write_synthetic_log(inside, 2, d_model=8)
    write_synthetic_log(outside, 2, d_model=8)
    return inside, outside


def test_a_log_as_written_opens_and_reads(logs):
    inside, _ = logs
    records = list(ActivationLog(inside).iter_records())
    assert len(records) == 2 and all(r.error is None for r in records)


@pytest.mark.parametrize(
    "paths",
    [
        {"tensors": "../../elsewhere/shards/00000.safetensors"},
        {"index": "../../elsewhere/index/00000.parquet"},
        {"tensors": "shards/../../../elsewhere/shards/00000.safetensors"},
        {"tensors": "ABSOLUTE"},
        {"index": "C:/x.parquet"},
        {"tensors": "shards\\..\\..\\x"},
        {"tensors": "shards/\x00"},
        {"tensors": ""},
    ],
)
def test_shard_paths_leaving_the_log_are_refused(logs, paths):
    inside, outside = logs
    if paths.get("tensors") == "ABSOLUTE":
        paths = {"tensors": str(outside / "shards" / "00000.safetensors")}
    point_shard(inside, **paths)
    with pytest.raises(OracleInputError, match="shard '00000'"):
        ActivationLog(inside)


def test_a_symlink_out_of_the_log_is_refused(logs):
    inside, outside = logs
    (inside / "shards" / "00000.safetensors").unlink()
    (inside / "shards" / "00000.safetensors").symlink_to(outside / "shards" / "00000.safetensors")
    with pytest.raises(OracleInputError, match="resolves outside the log directory"):
        ActivationLog(inside)


@pytest.mark.parametrize("entry", ["shards/00000.safetensors", {"name": "00000"}, None])
def test_malformed_shard_entries_are_clear_errors(logs, entry):
    inside, _ = logs
    path = inside / MANIFEST
    manifest = json.loads(path.read_text())
    manifest["shards"][0] = entry
    path.write_text(json.dumps(manifest))
    with pytest.raises(OracleInputError, match="manifest shard entry"):
        ActivationLog(inside)
