"""The parts of the Ray audit that run without Ray: the worker (engine, records read shard by
shard, one Parquet part per batch), the pending-pairs step, absorbing parts into
results.jsonl, and the command line's checks. The Ray pipeline itself: test_ray.py."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from audit.logformat import ActivationLog
from audit.parts import absorb_parts, part_files, write_part
from audit.questions import make_questions
from audit.ray_config import RayConfig
from audit.ray_worker import AuditWorker, PendingPairs, WorkerSpec
from audit.results import ResultsFile
from audit.runner import RESULTS, in_shard, run_audit
from audit.synthetic import write_synthetic_log
from audit.writer import LogRecord, LogWriter
from oracle.engines.hf import HFEngine
from oracle.errors import OracleInputError
from tests.helpers import make_oracle_dir

QUESTIONS = make_questions(["Is the assistant a pirate?", "What persona is the assistant playing?"])


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("ray_worker"), "llama")


def engine_options(dirs) -> dict:
    base, oracle = dirs
    return {"target": str(base), "oracle": str(oracle), "dtype": "float32", "device": "cpu"}


def bad_log(path: Path, d: int) -> ActivationLog:
    """Good records, a NaN one, one too wide, and a shard whose tensors file is truncated."""
    good = torch.randn(3, d, generator=torch.Generator().manual_seed(0))
    nan = good.clone()
    nan[0, 0] = float("nan")
    writer = LogWriter(path, "m", [1], d, positions="all", shard_records=4)
    for rid, acts in [
        ("g1", good),
        ("nan", nan),
        ("wide", torch.randn(3, d + 1)),
        ("g2", good * 2),
    ]:
        writer.add_conversation([LogRecord(rid, f"c-{rid}", 1, acts, [0, 1, 2])])
    for i in range(3):
        writer.add_conversation([LogRecord(f"cut{i}", f"k{i}", 1, good + i, [0, 1, 2])])
    writer.close()
    shard = path / "shards" / "00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:40])  # not even its header
    return ActivationLog(path)


def all_pairs(logs: ActivationLog) -> dict[str, np.ndarray]:
    """Every pair of the log, record-major as the local audit walks them."""
    rows = [(rid, s.name, k) for s in logs.shards for rid in logs.record_ids(s) for k in (0, 1)]
    return {
        "record_id": np.array([r[0] for r in rows], dtype=object),
        "shard": np.array([r[1] for r in rows], dtype=object),
        "question": np.array([r[2] for r in rows]),
    }


def keyed(rows) -> dict:
    return {(r["record_id"], r["question"]): r for r in rows}


def test_worker_answers_as_the_local_audit_and_writes_one_part_per_batch(dirs, tmp_path):
    engine = HFEngine.load(**engine_options(dirs), batch_size=8)
    logs = bad_log(tmp_path / "log", engine.d_model)
    run_audit(engine, logs, QUESTIONS, tmp_path / "local", batch_size=4, max_new_tokens=3)
    local = keyed(ResultsFile(tmp_path / "local" / RESULTS).rows())

    spec = WorkerSpec(str(logs.path), QUESTIONS, str(tmp_path / "parts"), "hf",
                      engine_options(dirs), max_new_tokens=3)  # fmt: skip
    worker = AuditWorker(spec)
    pairs = all_pairs(logs)
    for s in range(0, len(pairs["record_id"]), 4):  # the local audit's batches
        out = worker({k: v[s : s + 4] for k, v in pairs.items()})
        assert out["pairs"].tolist() == [min(4, len(pairs["record_id"]) - s)]
    assert len(part_files(tmp_path / "parts")) == 4  # 14 pairs in batches of 4
    results = ResultsFile(tmp_path / "ray" / RESULTS)
    assert absorb_parts(part_files(tmp_path / "parts"), results) == (14, 0)
    ray = keyed(results.rows())
    assert ray.keys() == local.keys() and len(ray) == 14
    for key, want in local.items():
        got = ray[key]
        assert (got["answer"], got["error"], got["layer"]) == (
            want["answer"], want["error"], want["layer"],
        )  # fmt: skip
        assert (got["p_yes"] is None) == (want["p_yes"] is None)
        if want["p_yes"] is not None:
            assert got["p_yes"] == pytest.approx(want["p_yes"], abs=1e-5)
    assert "NaN" in ray[("nan", QUESTIONS[0].text)]["error"]
    assert "d_model" in ray[("wide", QUESTIONS[0].text)]["error"]
    assert all("unreadable" in ray[(f"cut{i}", QUESTIONS[1].text)]["error"] for i in range(3))
    assert ray[("g1", QUESTIONS[0].text)]["error"] is None


def test_worker_refuses_a_log_of_another_width(dirs, tmp_path):
    write_synthetic_log(tmp_path / "log", 2, d_model=48, n_positions=2)
    spec = WorkerSpec(str(tmp_path / "log"), QUESTIONS, str(tmp_path / "parts"), "hf",
                      engine_options(dirs))  # fmt: skip
    with pytest.raises(OracleInputError, match="size 48"):
        AuditWorker(spec)


def test_pending_pairs_skip_done_pairs_and_other_shards():
    expand = PendingPairs(
        ["Q1", "Q2"],
        {"/log/index/00000.parquet": "00000", "00001.parquet": "00001"},
        frozenset({("a", "Q1"), ("b", "Q1"), ("b", "Q2")}),
    )
    batch = {
        "record_id": np.array(["a", "b", "c"], dtype=object),
        "path": np.array(["/log/index/00000.parquet"] * 2 + ["/x/00001.parquet"], dtype=object),
    }
    out = expand(batch)
    assert list(zip(out["record_id"], out["shard"], out["question"], strict=True)) == [
        ("a", "00000", 1), ("c", "00001", 0), ("c", "00001", 1),
    ]  # fmt: skip
    half = PendingPairs(["Q1"], {"p": "s"}, shard=(1, 2))
    ids = [f"r{i}" for i in range(20)]
    got = half({"record_id": np.array(ids, dtype=object), "path": np.array(["p"] * 20)})
    assert list(got["record_id"]) == [r for r in ids if in_shard(r, (1, 2))]


def row(rid: str, q: str = "Q", answer: str = "Yes") -> dict:
    return {"record_id": rid, "conversation_id": rid, "layer": 1, "question": q,
            "answer": answer, "p_yes": 0.5, "error": None}  # fmt: skip


def test_absorbing_parts_keeps_each_pair_once_and_ignores_unfinished_parts(tmp_path):
    parts = tmp_path / "parts"
    write_part(parts, [row("a"), row("b")])
    write_part(parts, [row("b", answer="No"), row("c")])  # a retried batch: b twice
    (parts / "deadbeef.parquet.tmp").write_bytes(b"PAR1 torn")  # a writer killed mid-part
    assert all(pq.read_table(p).num_rows == 2 for p in part_files(parts))
    results = ResultsFile(tmp_path / RESULTS)
    results.append([row("a")])  # already there from an earlier run
    assert absorb_parts(part_files(parts), results) == (2, 2)
    assert sorted(r["record_id"] for r in results.rows()) == ["a", "b", "c"]
    assert absorb_parts(part_files(parts), results) == (0, 4)  # again: nothing new


def cli(*args: str):
    from oracle_cli import app, load_commands

    load_commands()
    return CliRunner().invoke(app, list(args))


def test_cli_ray_options_need_ray_and_are_checked(tmp_path):
    write_synthetic_log(tmp_path / "log", 2, d_model=64, n_positions=2)
    base = ["audit", "--logs", str(tmp_path / "log"), "--out", str(tmp_path / "o"),
            "--question", "Is it?"]  # fmt: skip
    result = cli(*base, "--ray-actors", "2")
    assert result.exit_code != 0 and "need --ray" in str(result.exception)
    result = cli(*base, "--ray", "--ray-actors", "0")
    assert result.exit_code != 0 and "ray_actors must be >= 1" in str(result.exception)
    with pytest.raises(OracleInputError, match="ray_threads"):
        RayConfig(ray_threads=0)
    with pytest.raises(OracleInputError, match="ray start --num-cpus"):
        RayConfig(ray_address="auto", ray_cpus=2)
    assert RayConfig(ray_cpus=2).local and not RayConfig(ray_address="h:6379").local
    assert not (tmp_path / "o").exists()


def test_the_local_audit_resumes_from_the_parts_of_a_killed_ray_run(dirs, tmp_path):
    engine = HFEngine.load(**engine_options(dirs), batch_size=8)
    write_synthetic_log(tmp_path / "log", 4, d_model=engine.d_model, n_positions=2)
    logs = ActivationLog(tmp_path / "log")
    out = tmp_path / "out"
    first = [row(f"s{i}@L1", QUESTIONS[0].text, "from a part") for i in range(3)]
    write_part(out / "parts", first)
    state = run_audit(engine, logs, QUESTIONS, out, batch_size=4, max_new_tokens=2)
    assert (state.total, state.done_before, state.answered) == (8, 3, 5)
    rows = keyed(ResultsFile(out / RESULTS).rows())
    assert len(rows) == 8 and [r["answer"] for r in list(rows.values())[:3]] == ["from a part"] * 3
    assert not part_files(out / "parts")


def test_the_local_audit_needs_no_ray_and_ray_without_it_says_how_to_install(
    dirs, tmp_path, monkeypatch
):
    from oracle.config import OracleConfig

    base, oracle = dirs
    for name in [m for m in sys.modules if m in ("ray", "audit.ray_runner") or m[:4] == "ray."]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails, as without the extra
    d_model = OracleConfig.load(oracle).d_model
    write_synthetic_log(tmp_path / "log", 3, d_model=d_model, n_positions=2)
    base_args = ["audit", "--logs", str(tmp_path / "log"), "--target", str(base), "--oracle",
                 str(oracle), "--question", "Is it a pirate?", "--max-new-tokens", "2"]  # fmt: skip
    result = cli(*base_args, "--out", str(tmp_path / "local"))
    assert result.exit_code == 0, result.output
    assert len(list(ResultsFile(tmp_path / "local" / RESULTS).rows())) == 3
    assert "ray" not in sys.modules or sys.modules["ray"] is None
    result = cli(*base_args, "--out", str(tmp_path / "ray"), "--ray")
    assert result.exit_code != 0 and "pip install -e .[ray]" in str(result.exception)
