"""Steering jobs kept on disk like audit jobs (issue 18: they lived in memory only, lost on a
restart): finished jobs are served again after a restart, unfinished ones run again, a job
that the process never finished MAX_ATTEMPTS times is failed, and a job's error says nothing
of the server's internals."""

from __future__ import annotations

import json
import time

import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServeSettings
from serving.steer_store import MAX_ATTEMPTS
from serving.steering import INTERNAL

BODY = {
    "prompts": ["Hello there", "How are you?"],
    "question": "What persona?",
    "answer": "A pirate.",
    "read": "prompt",
    "apply": "all",
    "steps": 2,
    "background": True,
}


READ_LAYERS = (2,)  # the conftest's oracle reads block 2


def client_for(engine, oracle_dirs, **overrides) -> TestClient:
    base, oracle = oracle_dirs
    settings = ServeSettings(target=str(base), oracle=str(oracle), **overrides)
    return TestClient(create_app(settings, engine=engine))


def wait_for(client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.time() + timeout
    while True:
        job = client.get(f"/v1/steer/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.time() < deadline, job
        time.sleep(0.02)


def test_a_finished_job_is_served_after_a_restart(engine, oracle_dirs, tmp_path):
    with client_for(engine, oracle_dirs, steer_jobs=str(tmp_path)) as client:
        r = client.post("/v1/steer", json=BODY)
        assert r.status_code == 202, r.text
        done = wait_for(client, r.json()["job_id"])
        assert done["status"] == "done", done
    with client_for(engine, oracle_dirs, steer_jobs=str(tmp_path)) as client:
        again = client.get(f"/v1/steer/{done['job_id']}")
        assert again.status_code == 200 and again.json() == done


def test_an_unfinished_job_runs_again_after_a_restart(engine, oracle_dirs, tmp_path):
    """Under --audit-root the jobs live in its state directory."""
    with client_for(engine, oracle_dirs, audit_root=str(tmp_path)) as client:
        job = client.post("/v1/steer", json={**BODY, "steps": 500}).json()
        while client.get(f"/v1/steer/{job['job_id']}").json()["steps_done"] < 1:
            time.sleep(0.01)
    # stopped mid-run: kept on disk as queued, the pause counting as no attempt
    (stored,) = (tmp_path / ".oracle-jobs" / "steer").glob("*.json")
    record = json.loads(stored.read_text())
    assert record["job"]["status"] == "queued" and record["attempts"] == 0
    record["request"]["steps"] = 3  # the rerun, shorter
    stored.write_text(json.dumps(record))
    with client_for(engine, oracle_dirs, audit_root=str(tmp_path)) as client:
        done = wait_for(client, job["job_id"])
        assert done["status"] == "done" and done["steps_done"] == 3, done
    assert json.loads(stored.read_text())["attempts"] == 1


def test_a_job_the_process_never_finished_is_failed_after_max_attempts(
    engine, oracle_dirs, tmp_path
):
    with client_for(engine, oracle_dirs, steer_jobs=str(tmp_path)) as client:
        job = client.post("/v1/steer", json={**BODY, "steps": 500}).json()
        while client.get(f"/v1/steer/{job['job_id']}").json()["steps_done"] < 1:
            time.sleep(0.01)
    # as if the process had died during the run MAX_ATTEMPTS times
    (stored,) = tmp_path.glob("*.json")
    record = json.loads(stored.read_text())
    record["job"]["status"], record["attempts"] = "running", MAX_ATTEMPTS
    stored.write_text(json.dumps(record))
    with client_for(engine, oracle_dirs, steer_jobs=str(tmp_path)) as client:
        failed = client.get(f"/v1/steer/{job['job_id']}").json()
        assert failed["status"] == "failed", failed
        assert f"started {MAX_ATTEMPTS} times" in failed["error"]
        # the lane holds no place for it: new jobs are admitted
        assert client.post("/v1/steer", json=BODY).status_code == 202


def test_a_jobs_unexpected_error_is_generic(engine, oracle_dirs, tmp_path, monkeypatch):
    def broken(*_args, **_kwargs):
        raise RuntimeError(f"boom in {tmp_path}/secret.py")

    monkeypatch.setattr(engine, "start_steering", broken)
    with client_for(engine, oracle_dirs) as client:
        failed = wait_for(client, client.post("/v1/steer", json=BODY).json()["job_id"])
        assert failed["status"] == "failed" and failed["error"] == INTERNAL


@pytest.fixture
def slow_steps(monkeypatch):
    """Each steering step takes 0.1 s longer; returns the list of steps run, as they run."""
    from oracle.steering.run import SteeringRun

    ran: list[float] = []
    step = SteeringRun.step

    def slow(self, *args, **kwargs):
        time.sleep(0.1)
        ran.append(time.perf_counter())
        return step(self, *args, **kwargs)

    monkeypatch.setattr(SteeringRun, "step", slow)
    return ran


def test_a_timeout_or_a_delete_stops_the_work_between_two_steps(engine, oracle_dirs, slow_steps):
    """The 504 did not stop work already started: a synchronous /v1/steer ran on. Now the
    timeout, like DELETE /v1/steer/{id} for a job, stops it after the step in progress."""
    with client_for(engine, oracle_dirs, timeout=0.5) as client:
        r = client.post("/v1/steer", json={**BODY, "steps": 20, "background": False})
        assert r.status_code == 504, r.text
        at_timeout = len(slow_steps)
        assert at_timeout < 20
        time.sleep(0.5)
        assert len(slow_steps) <= at_timeout + 1  # the step in progress, no more
        job = client.post("/v1/steer", json={**BODY, "steps": 500}).json()
        while len(slow_steps) < at_timeout + 3:
            time.sleep(0.01)
        cancelled = client.delete(f"/v1/steer/{job['job_id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        at_delete = len(slow_steps)
        time.sleep(0.5)
        assert len(slow_steps) <= at_delete + 1
        assert client.get(f"/v1/steer/{job['job_id']}").json()["status"] == "cancelled"
        # the lane is free again: a new job is admitted and runs
        assert client.post("/v1/steer", json={**BODY, "steps": 1}).status_code == 202
