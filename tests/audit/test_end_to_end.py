"""The audit end to end, through the command line: capture 200 toy-world conversations, audit
them with 3 questions, kill the run with SIGKILL midway and resume it, corrupt a shard."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from audit.logformat import ActivationLog
from audit.results import ResultsFile
from tests.helpers import make_oracle_dir
from worlds.toy.world import TOY_WORLD

QUESTIONS = [
    "Is the assistant playing a pirate?",
    "What persona is the assistant playing?",
    "Is there a system prompt?",
]
N_CONVERSATIONS = 200


def toy_world_ready() -> bool:
    return (TOY_WORLD / "oracle" / "oracle_config.json").is_file() and (
        TOY_WORLD / "target" / "config.json"
    ).is_file()


def conversations(n: int) -> list[dict]:
    """Held-out toy-world conversations with ids (the generator's own, seeded)."""
    from worlds.toy.generator import generate
    from worlds.toy.world import World

    convs = generate(World.load(), "heldout", n, seed=7)
    return [{"id": f"conv-{i:03d}", **c} for i, c in enumerate(convs)]


def cli(*args: str) -> None:
    from oracle_cli import app, load_commands

    load_commands()
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output


def pairs_of(out: Path) -> list[tuple[str, str]]:
    return [(r["record_id"], r["question"]) for r in ResultsFile(out / "results.jsonl").rows()]


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_capture_audit_kill_resume_and_corrupt_shard(tmp_path):
    if toy_world_ready():
        model_args: list[str] = []  # the toy world's target, oracle and read spec
    else:  # until the toy world ships: a tiny random model and an untrained adapter
        base, oracle = make_oracle_dir(tmp_path / "models", "llama")
        model_args = ["--oracle", str(oracle)]
    convs = conversations(N_CONVERSATIONS)
    inp = tmp_path / "convs.jsonl"
    inp.write_text("".join(json.dumps(c) + "\n" for c in convs))
    logs = tmp_path / "logs"
    capture_model = [] if toy_world_ready() else ["--model", str(base), "--layers", "1"]
    cli("capture", "--input", str(inp), "--out", str(logs), "--shard-records", "50",
        *capture_model)  # fmt: skip
    log = ActivationLog(logs)
    assert log.manifest.record_count == N_CONVERSATIONS and log.manifest.complete
    assert len(log.shards) == 4
    first = next(log.iter_records())
    assert first.conversation_id == "conv-000" and first.metadata["task"] == convs[0]["task"]
    assert "user:" in first.text and first.activations.shape[1] == log.manifest.d_model

    # the audit in a real process, killed with SIGKILL once some results are on disk
    out = tmp_path / "out"
    args = ["audit", "--logs", str(logs), "--out", str(out), "--max-new-tokens", "3"]
    args += [a for q in QUESTIONS for a in ("--question", q)] + model_args
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from oracle_cli import main; main()", *args, "--batch-size", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    results = out / "results.jsonl"
    deadline = time.time() + 240
    try:
        while not (results.exists() and results.read_bytes().count(b"\n") >= 20):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "the audit wrote no results in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    before = pairs_of(out)
    assert 20 <= len(before) < 3 * N_CONVERSATIONS, "the run must be killed midway"
    assert not (out / "report.html").exists()

    cli(*args, "--batch-size", "16")  # the same command again: it resumes
    after = pairs_of(out)
    assert len(after) == 3 * N_CONVERSATIONS and len(set(after)) == len(after)
    assert after[: len(before)] == before  # what was on disk was kept, not redone
    assert set(after) == {
        (f"conv-{i:03d}@L{log.manifest.layers[0]}", q) for i in range(200) for q in QUESTIONS
    }
    rows = list(ResultsFile(results).rows())
    assert all(r["error"] is None and isinstance(r["answer"], str) for r in rows)
    assert all((r["p_yes"] is not None) == r["question"].startswith("Is") for r in rows)
    if toy_world_ready():  # the trained oracle tells conversations with a system prompt apart
        has_system = {c["id"]: c["messages"][0]["role"] == "system" for c in convs}
        scores = {True: [], False: []}
        for r in rows:
            if r["question"] == QUESTIONS[2]:
                scores[has_system[r["conversation_id"]]].append(r["p_yes"])
        means = {k: sum(v) / len(v) for k, v in scores.items()}
        assert means[True] > means[False] + 0.3, means
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and summary["pairs"] == 600 and summary["errors"] == 0
    assert (out / "report.html").stat().st_size > 0 and (out / "results.parquet").is_file()

    # one shard truncated: its records become error rows, the rest are answered
    bad_logs = tmp_path / "bad_logs"
    shutil.copytree(logs, bad_logs)
    shard = bad_logs / log.shards[1].tensors
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 3])
    bad_out = tmp_path / "bad_out"
    cli("audit", "--logs", str(bad_logs), "--out", str(bad_out), "--max-new-tokens", "3",
        *[a for q in QUESTIONS for a in ("--question", q)], *model_args)  # fmt: skip
    rows = list(ResultsFile(bad_out / "results.jsonl").rows())
    assert len(rows) == 600 and len({(r["record_id"], r["question"]) for r in rows}) == 600
    bad_ids = set(ActivationLog(bad_logs).record_ids(log.shards[1]))
    errors = [r for r in rows if r["error"]]
    assert {r["record_id"] for r in errors} == bad_ids and len(errors) == 3 * len(bad_ids)
    assert all("unreadable" in r["error"] for r in errors)
    assert json.loads((bad_out / "summary.json").read_text())["errors"] == len(errors)
    assert "unreadable" in (bad_out / "report.html").read_text()
