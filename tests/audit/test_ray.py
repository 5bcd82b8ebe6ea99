"""The audit on a real local Ray (2 CPUs): 200 toy-world conversations x 3 questions equal to
the single-process audit; an actor killed during the run; a driver killed and the command run
again. Each run ends with exactly 600 unique pairs, and no Ray process outlives the module."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.finish import finish
from audit.logformat import ActivationLog
from audit.parts import PARTS, part_files
from audit.questions import make_questions
from audit.results import ResultsFile
from audit.runner import RESULTS, run_audit
from oracle.defaults import default_oracle
from worlds.toy.world import TOY_WORLD

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install -e .[ray])")
psutil = pytest.importorskip("psutil")

pytestmark = [pytest.mark.slow, pytest.mark.ray]

QUESTIONS = [
    "Is the assistant playing a pirate?",
    "What persona is the assistant playing?",
    "Is there a system prompt?",
]
N = 200
PAIRS = 3 * N
MAX_NEW = 3
BATCH = 16
MARK = "ORACLE_RAY_TEST_MARK"  # set in every process this module's Ray starts
ACTOR = "ray::MapWorker(MapBatches(AuditWorker))"

if not (TOY_WORLD / "oracle" / "oracle_config.json").is_file():
    pytest.skip("the toy world is not in this checkout", allow_module_level=True)


def marked(mark: str) -> list:
    """Processes (other than this one) whose environment carries ``mark``."""
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if p.pid != os.getpid() and p.environ().get(MARK) == mark:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


@pytest.fixture(scope="module")
def cluster():
    """A local Ray with 2 CPUs for the module; afterwards, no process of it may be left."""
    mark = uuid.uuid4().hex
    saved = dict(os.environ)  # ray.init sets RAY_AUTH_MODE=token in this process
    os.environ[MARK] = mark
    temp = tempfile.mkdtemp(prefix="rt")  # short (not under tmp_path): socket paths are bounded
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp)
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        os.environ.clear()
        os.environ.update(saved)
        deadline = time.time() + 60
        while (left := marked(mark)) and time.time() < deadline:
            time.sleep(1)
        for p in left:  # reported below; killed so that the machine stays clean
            p.kill()
        shutil.rmtree(temp, ignore_errors=True)  # Ray's session logs
        assert not left, [" ".join(p.cmdline()) for p in left]


def cli(*args: str) -> None:
    from oracle_cli import app, load_commands

    load_commands()
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def toy_log(tmp_path_factory) -> Path:
    from worlds.toy.generator import generate
    from worlds.toy.world import World

    work = tmp_path_factory.mktemp("ray_audit")
    convs = generate(World.load(), "heldout", N, seed=7)
    inp = work / "convs.jsonl"
    inp.write_text(
        "".join(json.dumps({"id": f"conv-{i:03d}", **c}) + "\n" for i, c in enumerate(convs))
    )
    cli("capture", "--input", str(inp), "--out", str(work / "logs"), "--shard-records", "50")
    return work / "logs"


def keyed(out: Path) -> dict:
    rows = list(ResultsFile(out / RESULTS).rows())
    keys = [(r["record_id"], r["question"]) for r in rows]
    assert len(keys) == len(set(keys)), "a pair was written twice"
    return dict(zip(keys, rows, strict=True))


@pytest.fixture(scope="module")
def local(toy_log, tmp_path_factory) -> dict:
    """The single-process audit of the same log: what every Ray run must equal."""
    from oracle.engines import create_engine

    out = tmp_path_factory.mktemp("local") / "out"
    engine = create_engine("hf", oracle=str(default_oracle()), dtype="float32", device="cpu",
                           batch_size=BATCH)  # fmt: skip
    run_audit(engine, ActivationLog(toy_log), make_questions(QUESTIONS), out, batch_size=BATCH,
              max_new_tokens=MAX_NEW)  # fmt: skip
    rows = keyed(out)
    assert len(rows) == PAIRS and not any(r["error"] for r in rows.values())
    return rows


def assert_equal_to_local(out: Path, local: dict) -> None:
    rows = keyed(out)
    assert len(rows) == PAIRS and rows.keys() == local.keys()
    for key, want in local.items():
        got = rows[key]
        assert got["answer"] == want["answer"] and got["error"] is None, key
        if want["p_yes"] is None:
            assert got["p_yes"] is None
        else:
            assert got["p_yes"] == pytest.approx(want["p_yes"], abs=1e-4), key
    assert not part_files(out / PARTS), "every part was moved into results.jsonl"


def ray_audit(toy_log: Path, out: Path, actors: int = 2):
    from audit.ray_config import RayConfig
    from audit.ray_runner import run_audit_ray

    return run_audit_ray(
        ActivationLog(toy_log), make_questions(QUESTIONS), out, RayConfig(ray_actors=actors),
        "hf", {"oracle": str(default_oracle()), "dtype": "float32", "device": "cpu",
               "batch_size": BATCH},
        batch_size=BATCH, max_new_tokens=MAX_NEW,
    )  # fmt: skip


def rows_in_parts(out: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(p).num_rows for p in part_files(out / PARTS))


@pytest.mark.timeout(420)
def test_ray_audit_equals_the_single_process_audit(cluster, toy_log, local, tmp_path):
    out = tmp_path / "out"
    state = ray_audit(toy_log, out, actors=2)
    assert (state.total, state.done_before, state.answered, state.errors) == (PAIRS, 0, PAIRS, 0)
    assert_equal_to_local(out, local)
    summary = finish(out, ActivationLog(toy_log), expected=state.total)
    assert summary["complete"] and summary["pairs"] == PAIRS and summary["errors"] == 0
    assert "<svg" in (out / "report.html").read_text()
    assert (out / "results.parquet").is_file()
    # run again: nothing left to do, no actor started, nothing written twice
    again = ray_audit(toy_log, out, actors=2)
    assert (again.total, again.done_before, again.answered) == (PAIRS, PAIRS, 0)
    assert_equal_to_local(out, local)


@pytest.mark.timeout(420)
def test_an_actor_killed_mid_run_is_replaced_and_each_pair_written_once(
    cluster, toy_log, local, tmp_path
):
    out = tmp_path / "out"
    killed: dict = {}

    def kill_one_actor() -> None:
        deadline = time.time() + 300
        while time.time() < deadline and not killed:
            if len(part_files(out / PARTS)) >= 3:
                actors = [p for p in marked(os.environ[MARK]) if p.cmdline()[:1]
                          and p.cmdline()[0].startswith(ACTOR)]  # fmt: skip
                if actors:
                    killed["rows_before"] = rows_in_parts(out)
                    killed["pid"] = actors[0].pid
                    actors[0].send_signal(signal.SIGKILL)
            time.sleep(0.2)

    watcher = threading.Thread(target=kill_one_actor, daemon=True)
    watcher.start()
    state = ray_audit(toy_log, out, actors=2)
    watcher.join(5)
    assert killed, "no actor was killed"
    assert 48 <= killed["rows_before"] < PAIRS, "the actor must die mid-run"
    assert (
        not psutil.pid_exists(killed["pid"]) or psutil.Process(killed["pid"]).status() == "zombie"
    )
    assert state.total == PAIRS and state.answered >= PAIRS  # a retried batch may count twice
    assert_equal_to_local(out, local)


@pytest.mark.timeout(480)
def test_a_killed_driver_and_the_same_command_again_end_with_each_pair_once(
    cluster, toy_log, local, tmp_path
):
    out = tmp_path / "out"
    args = [sys.executable, "-c", "from oracle_cli import main; main()", "audit", "--logs",
            str(toy_log), "--out", str(out), "--max-new-tokens", str(MAX_NEW), "--batch-size",
            str(BATCH), *[a for q in QUESTIONS for a in ("--question", q)], "--dtype", "float32",
            "--device", "cpu", "--ray-address", cluster, "--ray-actors", "2"]  # fmt: skip
    # the cluster's token authentication is on: RAY_AUTH_MODE=token, set by ray.init here
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while len(part_files(out / PARTS)) < 3:
            assert proc.poll() is None, errors_of(proc.stderr.read().decode())
            assert time.time() < deadline, "the audit wrote no parts in time"
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    deadline = time.time() + 60  # the cluster ends the dead driver's actors
    while any(" ".join(p.cmdline()).startswith(ACTOR) for p in marked(os.environ[MARK])):
        assert time.time() < deadline, "the killed driver's actors are still running"
        time.sleep(0.5)
    before = {}
    for path in part_files(out / PARTS):
        before.update({(r["record_id"], r["question"]): r for r in _rows(path)})
    assert 48 <= len(before) < PAIRS, "the driver must die mid-run"
    assert not (out / RESULTS).exists()  # the driver moves parts there only at its end

    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=420)
    assert done.returncode == 0, errors_of(done.stderr)
    recovered = int(re.search(r"(\d+) pairs recovered", done.stderr).group(1))
    answered = int(re.search(r"(\d+) pairs this run", done.stderr).group(1))
    assert recovered >= len(before) and recovered + answered == PAIRS
    first = list(keyed(out))[:recovered]  # the parts' pairs first: kept, not answered again
    assert set(first) >= set(before)
    assert_equal_to_local(out, local)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["pairs"] == PAIRS


def errors_of(stderr: str) -> str:
    """The lines of a failed command's stderr that name an error, and its last lines."""
    lines = stderr.splitlines()
    return "\n".join([x for x in lines if "Error" in x][-10:] + lines[-5:])


def _rows(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from tests.helpers import make_oracle_dir

    base, oracle = make_oracle_dir(tmp_path_factory.mktemp("tiny_ray"), "llama")
    return {"target": str(base), "oracle": str(oracle), "dtype": "float32", "device": "cpu"}


@pytest.mark.timeout(300)
def test_bad_records_and_an_unreadable_index_part_give_the_local_audits_error_rows(
    cluster, tiny, tmp_path
):
    import torch

    from audit.ray_config import RayConfig
    from audit.ray_runner import run_audit_ray
    from audit.writer import LogRecord, LogWriter
    from oracle.engines import create_engine

    engine = create_engine("hf", **tiny)
    d, good = engine.d_model, torch.randn(3, engine.d_model)
    nan = good.clone()
    nan[1, 1] = float("nan")
    writer = LogWriter(tmp_path / "log", "m", [1], d, positions="all", shard_records=2)
    records = [("g1", good), ("nan", nan), ("wide", torch.randn(3, d + 1)), ("g2", good * 2),
               ("lost1", good), ("lost2", good), ("g3", -good)]  # fmt: skip
    for rid, acts in records:
        writer.add_conversation([LogRecord(rid, f"c-{rid}", 1, acts, [0, 1, 2])])
    writer.close()
    logs = ActivationLog(tmp_path / "log")
    index = tmp_path / "log" / logs.shards[2].index  # lost1, lost2: unreadable for Ray too
    index.write_bytes(index.read_bytes()[:30])
    questions = make_questions(["Is it a pirate?", "What persona is it?"])
    run_audit(engine, logs, questions, tmp_path / "local", batch_size=4, max_new_tokens=2)
    state = run_audit_ray(logs, questions, tmp_path / "ray", RayConfig(ray_actors=1), "hf", tiny,
                          batch_size=4, max_new_tokens=2)  # fmt: skip
    local, got = keyed(tmp_path / "local"), keyed(tmp_path / "ray")
    assert state.total == len(local) == len(got) == 14 and got.keys() == local.keys()
    for key, want in local.items():
        assert (got[key]["answer"], got[key]["error"]) == (want["answer"], want["error"]), key
    assert state.errors == sum(1 for r in got.values() if r["error"]) == 8
    assert any("unreadable" in (r["error"] or "") for r in got.values())


@pytest.mark.timeout(300)
def test_a_log_of_another_width_is_refused_with_the_toolkits_error(
    cluster, tiny, toy_log, tmp_path
):
    from audit.ray_config import RayConfig
    from audit.ray_runner import run_audit_ray
    from oracle.errors import OracleInputError

    with pytest.raises(OracleInputError, match="activations of size 256"):
        run_audit_ray(ActivationLog(toy_log), make_questions(QUESTIONS[:1]), tmp_path / "out",
                      RayConfig(ray_actors=1), "hf", tiny, max_new_tokens=2)  # fmt: skip
