"""``POST /v1/audit`` and ``GET /v1/audit/{id}``: jobs on logs under the audit root, refused
paths outside it, and jobs that survive a server restart."""

from __future__ import annotations

import json
import time

import pytest

from audit.jobs import STATE_DIR
from audit.synthetic import write_synthetic_log
from tests.serving_support import client_for

QUESTIONS = ["Is the assistant a pirate?", "What persona is the assistant playing?"]


def wait_for(client, job_id: str, status: str = "done", timeout: float = 120) -> dict:
    deadline = time.time() + timeout
    while True:
        body = client.get(f"/v1/audit/{job_id}", params={"limit": 1000}).json()
        if body["status"] == status or body["status"] == "failed":
            return body
        assert time.time() < deadline, body
        time.sleep(0.05)


def test_job_runs_and_reports(engine, oracle_dirs, tmp_path):
    write_synthetic_log(tmp_path / "logs" / "day1", 5, d_model=engine.d_model, n_positions=3)
    with client_for(engine, oracle_dirs, audit_root=str(tmp_path)) as client:
        r = client.post(
            "/v1/audit", json={"logs": "logs/day1", "questions": QUESTIONS, "max_tokens": 2}
        )
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["status"] in ("queued", "running") and job["logs"] == "logs/day1"
        body = wait_for(client, job["id"])
        assert body["status"] == "done", body
        assert body["done"] == body["total"] == 10 and len(body["results"]) == 10
        assert {(x["record_id"], x["question"]) for x in body["results"]} == {
            (f"s{i}@L1", q) for i in range(5) for q in QUESTIONS
        }
        yes = [x for x in body["results"] if x["question"] == QUESTIONS[0]]
        assert all(0 <= x["p_yes"] <= 1 for x in yes)
        assert body["summary"]["complete"] and body["summary"]["pairs"] == 10
        page = client.get(f"/v1/audit/{job['id']}", params={"offset": 8, "limit": 5}).json()
        assert len(page["results"]) == 2 and page["offset"] == 8
        report = client.get(body["report_url"])
        assert report.status_code == 200 and "<svg" in report.text
        # ordinary requests are served while jobs exist
        assert client.get("/health").status_code == 200
    job_file = tmp_path / STATE_DIR / job["id"] / "job.json"
    assert json.loads(job_file.read_text())["status"] == "done"


def test_paths_outside_the_root_and_bad_requests_are_refused(engine, oracle_dirs, tmp_path):
    root = tmp_path / "root"
    write_synthetic_log(root / "logs", 2, d_model=engine.d_model)
    write_synthetic_log(tmp_path / "outside", 2, d_model=engine.d_model)
    write_synthetic_log(root / "wide", 2, d_model=engine.d_model + 8)
    (root / "link").symlink_to(tmp_path / "outside")
    with client_for(engine, oracle_dirs, audit_root=str(root)) as client:

        def post(logs, **extra):
            return client.post("/v1/audit", json={"logs": logs, "questions": QUESTIONS, **extra})

        for path in ("../outside", str(tmp_path / "outside"), "link", "logs/../../outside",
                     STATE_DIR, "/etc"):  # fmt: skip
            r = post(path)
            assert r.status_code == 403, (path, r.text)
            assert r.json()["error"]["type"] == "forbidden"
            assert "outside" in r.json()["error"]["message"]
        r = post("missing")
        assert r.status_code == 400 and "not a directory" in r.json()["error"]["message"]
        r = post("wide")
        assert r.status_code == 400 and "size" in r.json()["error"]["message"]
        assert post("logs", questions=[]).status_code == 422
        assert post("logs", max_tokens=10_000).status_code == 400
        assert post("logs", shard="5/2").status_code == 400
        for bad in ("0" * 32, "../../etc", "nope"):
            r = client.get(f"/v1/audit/{bad}")
            assert r.status_code == 404 and r.json()["error"]["type"] == "not_found"
        assert not list((root / STATE_DIR).iterdir())  # nothing was queued
    # a server started without an audit root keeps no jobs
    with client_for(engine, oracle_dirs) as client:
        r = client.post("/v1/audit", json={"logs": "logs", "questions": QUESTIONS})
        assert r.status_code == 404 and "audit-root" in r.json()["error"]["message"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_job_survives_a_restart(engine, oracle_dirs, tmp_path):
    write_synthetic_log(tmp_path / "big", 40, d_model=engine.d_model, n_positions=4)
    body = {"logs": "big", "questions": QUESTIONS, "max_tokens": 4, "batch_size": 1}
    with client_for(engine, oracle_dirs, audit_root=str(tmp_path)) as client:
        job = client.post("/v1/audit", json=body).json()
        results = tmp_path / STATE_DIR / job["id"] / "out" / "results.jsonl"
        deadline = time.time() + 120
        while not (results.exists() and results.read_text().count("\n") >= 5):
            assert time.time() < deadline
            time.sleep(0.02)
    # the server stopped mid-job: the job is left resumable on disk
    stored = json.loads((tmp_path / STATE_DIR / job["id"] / "job.json").read_text())
    assert stored["status"] == "running"
    done_at_stop = results.read_text().count("\n")
    assert 5 <= done_at_stop < 80
    with client_for(
        engine, oracle_dirs, audit_root=str(tmp_path)
    ) as client:  # a new server on the same root
        final = wait_for(client, job["id"])
        assert final["status"] == "done", final
        assert final["done"] == final["total"] == 80
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    pairs = [(r["record_id"], r["question"]) for r in rows]
    assert len(pairs) == 80 and len(set(pairs)) == 80


def test_audit_messages_name_paths_relative_to_the_root(engine, oracle_dirs, tmp_path):
    """Messages echoed absolute server paths: a missing log's 400 and a job's error rows
    (a reader's 'No such file or directory: /abs/...') name paths under the root only."""
    from audit.synthetic import write_synthetic_log

    write_synthetic_log(tmp_path / "logs", 2, d_model=engine.d_model, n_positions=2)
    (tmp_path / "logs" / "shards" / "00000.safetensors").unlink()
    body = {"questions": ["Is the assistant a pirate?"], "max_tokens": 2}
    with client_for(engine, oracle_dirs, audit_root=str(tmp_path)) as client:
        r = client.post("/v1/audit", json={"logs": "nowhere", **body})
        assert r.status_code == 400 and str(tmp_path) not in r.text
        assert "'nowhere' is not a directory" in r.json()["error"]["message"]
        job = client.post("/v1/audit", json={"logs": "logs", **body}).json()
        done = wait_for(client, job["id"])
        errors = [row["error"] for row in done["results"]]
        assert len(errors) == 2 and all("logs/shards/00000.safetensors" in e for e in errors)
        assert str(tmp_path) not in json.dumps(done)
