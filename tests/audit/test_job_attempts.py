"""Audit jobs on disk (issue 18): a job that keeps killing its process is not queued again at
every start (attempt counts); a batch cancelled under a job pauses it instead of failing it for
good; a job's error names paths relative to the root and says nothing of internals."""

from __future__ import annotations

import concurrent.futures
import time
from types import SimpleNamespace

import pytest

from audit.jobs import INTERNAL, MAX_ATTEMPTS, UNFINISHED, JobRunner, JobStore
from audit.questions import make_questions
from audit.runner import result_row
from audit.synthetic import write_synthetic_log
from oracle.errors import OracleInputError

D_MODEL = 8
QUESTIONS = make_questions(["Is the assistant a pirate?"], "auto")


class Crash(BaseException):
    """The process dying mid-job (nothing after it runs, as with a kill or a segfault)."""


def answering(pairs: list) -> list[dict]:
    return [result_row(record, q, answer="yes", p_yes=0.9) for record, q in pairs]


def runner_for(root, answer=answering) -> JobRunner:
    """A fresh runner on ``root``, as a new server process makes one."""
    return JobRunner(JobStore(root), SimpleNamespace(d_model=D_MODEL), lambda _job: answer)


@pytest.fixture
def root(tmp_path):
    write_synthetic_log(tmp_path / "logs", 4, d_model=D_MODEL, n_positions=2)
    return tmp_path


def new_job(root):
    return JobStore(root).create("logs", QUESTIONS, batch_size=2, d_model=D_MODEL)


def run_to_end(runner: JobRunner, job_id: str, timeout: float = 30) -> None:
    """Wait until the started ``runner`` has ended ``job_id``, then stop it."""
    deadline = time.time() + timeout
    while runner.store.get(job_id).status in UNFINISHED:
        assert time.time() < deadline, runner.store.get(job_id)
        time.sleep(0.01)
    runner.stop()


def test_a_job_that_kills_its_process_is_failed_after_max_attempts(root):
    job = new_job(root)

    def crash(_pairs):
        raise Crash

    for attempt in range(1, MAX_ATTEMPTS + 1):
        runner = runner_for(root, crash)  # each "process" resumes the job, then dies
        with pytest.raises(Crash):
            runner.run(runner.store.get(job.id))
        stored = JobStore(root).get(job.id)
        assert stored.status == "running" and stored.attempts == attempt
    runner = runner_for(root)
    assert runner.start() == []  # not queued again
    runner.stop()
    failed = JobStore(root).get(job.id)
    assert failed.status == "failed" and f"started {MAX_ATTEMPTS} times" in failed.error


def test_a_job_below_the_attempt_limit_resumes_and_a_pause_is_no_attempt(root):
    job = new_job(root)

    def crash(_pairs):
        raise Crash

    with pytest.raises(Crash):
        runner_for(root, crash).run(JobStore(root).get(job.id))
    stopping = runner_for(root)
    stopping.stopping.set()  # a shutdown: the job pauses at its next batch
    with pytest.raises(Exception, match=job.id):
        stopping.run(stopping.store.get(job.id))
    assert JobStore(root).get(job.id).attempts == 1  # the pause did not count
    runner = runner_for(root)
    assert runner.start() == [job.id]
    run_to_end(runner, job.id)
    done = JobStore(root).get(job.id)
    assert done.status == "done" and done.done == 4 and done.attempts == 2, done


def test_a_cancelled_batch_pauses_the_job_instead_of_failing_it(root):
    """A server whose engine queue stops cancels the batch a job waits for: the job stays
    resumable, and the next start finishes it."""
    job = new_job(root)

    def cancelled(_pairs):
        raise concurrent.futures.CancelledError

    runner = runner_for(root, cancelled)
    with pytest.raises(concurrent.futures.CancelledError):
        runner.run(runner.store.get(job.id))
    stored = JobStore(root).get(job.id)
    assert stored.status == "running" and stored.error is None and stored.attempts == 0
    runner = runner_for(root)
    assert runner.start() == [job.id]
    run_to_end(runner, job.id)
    assert JobStore(root).get(job.id).status == "done"


def test_job_errors_name_paths_relative_to_the_root_and_hide_internals(root):
    job = new_job(root)

    def bug(_pairs):
        raise RuntimeError(f"boom in {root}/secret/module.py")

    with pytest.raises(RuntimeError):
        runner_for(root, bug).run(JobStore(root).get(job.id))
    failed = JobStore(root).get(job.id)
    assert failed.status == "failed" and failed.error == INTERNAL
    # a known problem keeps its words, with the root taken out of its paths
    second = new_job(root)
    (root / "logs").rename(root / "gone")
    with pytest.raises(OracleInputError, match=str(root)):  # the library's own message
        runner_for(root).run(JobStore(root).get(second.id))
    assert JobStore(root).get(second.id).error == "activation log 'logs' is not a directory"
    (root / "gone" / "manifest.json").unlink()
    with pytest.raises(OracleInputError) as caught:
        JobStore(root).create("gone", QUESTIONS)
    assert str(caught.value) == "gone is not an activation log: no manifest.json"


def test_relative_takes_out_every_spelling_of_the_root(root):
    store = JobStore(root)
    assert store.relative(f"no {root}/logs/x here") == "no logs/x here"
    assert store.relative(f"at {root.resolve()}") == "at ."
