"""Audit jobs kept on disk, so that they survive a server restart.

Each job is a directory ``<root>/.oracle-jobs/<id>/`` holding ``job.json`` (what to audit and
the job's status) and ``out/`` (an ordinary audit output directory: ``results.jsonl``,
``report.html``, ...). :class:`JobRunner` runs queued jobs one at a time on a background
thread; at start it queues again every job left ``queued`` or ``running`` by a previous
process, and since the audit itself resumes from ``results.jsonl``, a job interrupted by a
restart (or a crash) finishes with every pair exactly once. Each start of a job counts as an
attempt (a pause by a shutdown does not): a job that was running when the process died
``MAX_ATTEMPTS`` times is marked failed instead of being queued again at every start.

Messages: a job's error, and the errors a store raises, name paths relative to the root
(:meth:`JobStore.relative`); an unexpected exception is logged with its traceback and the job
says only that an internal error stopped it.

Paths: the logs a job audits are given relative to the root and must resolve inside it
(:meth:`JobStore.resolve_logs`), so that a client cannot make the server read elsewhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import logging
import queue
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from audit.logformat import ActivationLog, write_atomic
from audit.questions import Question
from audit.runner import AuditProgress, AuditSpec, run_audit
from oracle.errors import OracleError, OracleInputError

log = logging.getLogger(__name__)

STATE_DIR = ".oracle-jobs"
JOB_FILE = "job.json"
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
UNFINISHED = ("queued", "running")
MAX_ATTEMPTS = 3  # starts of a job that never ended (the process died) before it is failed
# a batch cancelled under the job (its server's engine queue stopped): a pause, not a failure
CANCELLED = (concurrent.futures.CancelledError, asyncio.CancelledError)
INTERNAL = "an internal error stopped the audit (the server's log has the detail)"


class PathOutsideRoot(OracleInputError):
    """A requested path resolves outside the audit root (refused: no traversal)."""


class JobStopped(Exception):
    """Raised inside a job when the runner stops; the job stays resumable."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass
class Job:
    """One audit job, as stored in ``job.json``. ``logs`` is relative to the audit root."""

    id: str
    logs: str
    questions: list[dict]
    max_new_tokens: int = 16
    batch_size: int = 16
    shard: list[int] = field(default_factory=lambda: [0, 1])
    threshold: float = 0.5
    status: str = "queued"  # queued | running | done | failed
    created: str = field(default_factory=now)
    updated: str = field(default_factory=now)
    error: str | None = None
    total: int | None = None
    done: int = 0
    summary: dict | None = None
    attempts: int = 0  # starts that did not end in a pause (see MAX_ATTEMPTS)


class JobStore:
    """Job directories under ``<root>/.oracle-jobs``."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise OracleInputError(f"audit root {str(root)!r} is not a directory")
        self._spellings = sorted({str(self.root), str(Path(root).absolute())}, key=len)[::-1]
        self.state = self.root / STATE_DIR
        self.state.mkdir(exist_ok=True)
        self._lock = threading.Lock()

    def resolve_logs(self, logs: str) -> Path:
        """``logs`` (relative to the root, or absolute) as a path inside the root.

        Raises :class:`PathOutsideRoot` for anything that resolves outside it (``..``,
        absolute paths elsewhere, symlinks out) or into the jobs' own state directory.
        """
        if not isinstance(logs, str) or not logs.strip() or "\x00" in logs:
            raise OracleInputError("logs must be a non-empty path relative to the audit root")
        path = (self.root / logs).resolve()
        if not path.is_relative_to(self.root) or path.is_relative_to(self.state):
            raise PathOutsideRoot(f"logs path {logs!r} is outside the server's audit root")
        return path

    def relative(self, text: str) -> str:
        """``text`` with the root's absolute path taken out of every path it names (a client
        knows paths relative to the root; the server's layout is none of its business)."""
        for spelling in self._spellings:
            text = text.replace(spelling + "/", "").replace(spelling, ".")
        return text

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise KeyError(job_id)
        return self.state / job_id

    def create(
        self,
        logs: str,
        questions: list[Question],
        max_new_tokens: int = 16,
        batch_size: int = 16,
        shard: tuple[int, int] = (0, 1),
        threshold: float = 0.5,
        d_model: int | None = None,
    ) -> Job:
        """Check the request (the log must open; its d_model, if given, must match) and
        persist a queued job."""
        path = self.resolve_logs(logs)
        try:
            manifest = ActivationLog(path).manifest  # a bad log is refused now, not later
        except OracleInputError as exc:
            raise OracleInputError(self.relative(str(exc))) from None
        if d_model is not None and manifest.d_model != d_model:
            raise OracleInputError(
                f"log {logs!r} holds activations of size {manifest.d_model}; the oracle reads "
                f"size {d_model}"
            )
        job = Job(
            id=uuid.uuid4().hex,
            logs=str(path.relative_to(self.root)),
            questions=[asdict(q) for q in questions],
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            shard=list(shard),
            threshold=threshold,
        )
        self.job_dir(job.id).mkdir()
        self.save(job)
        return job

    def save(self, job: Job) -> None:
        job.updated = now()
        with self._lock:
            write_atomic(self.job_dir(job.id) / JOB_FILE, json.dumps(asdict(job), indent=2) + "\n")

    def get(self, job_id: str) -> Job:
        """The job ``job_id``; raises ``KeyError`` for an unknown or malformed id."""
        path = self.job_dir(job_id) / JOB_FILE
        if not path.is_file():
            raise KeyError(job_id)
        with self._lock:
            data = json.loads(path.read_text())
        return Job(**{k: v for k, v in data.items() if k in Job.__dataclass_fields__})

    def all(self) -> list[Job]:
        jobs = []
        for d in sorted(self.state.iterdir()):
            if not JOB_ID.match(d.name):  # not a job (a server's steering jobs, say)
                continue
            try:
                jobs.append(self.get(d.name))
            except (KeyError, ValueError, TypeError):
                log.warning("ignoring unreadable job directory %s", d)
        return sorted(jobs, key=lambda j: j.created)

    def out_dir(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "out"


AnswerFactory = Callable[[Job], Callable[[list], list[dict]]]


class JobRunner:
    """Runs jobs one at a time on a daemon thread.

    ``engine_info`` is the engine (or anything with ``d_model``) for the audit's checks;
    ``answer_for(job)`` returns the function that turns a batch of pairs into result rows
    (in a server: one that queues the batch on the engine's own thread); ``on_finish(job_id)``
    is called when a job leaves the worker (done, failed, or paused by a stop).
    """

    def __init__(
        self,
        store: JobStore,
        engine_info,
        answer_for: AnswerFactory,
        on_finish: Callable[[str], None] | None = None,
    ) -> None:
        self.store = store
        self.engine_info = engine_info
        self.answer_for = answer_for
        self.on_finish = on_finish
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.stopping = threading.Event()
        self.live: dict[str, AuditProgress] = {}
        self.thread = threading.Thread(target=self._work, name="audit-jobs", daemon=True)

    def start(self) -> list[str]:
        """Start the worker and queue again the unfinished jobs on disk; returns their ids.

        A job already started ``MAX_ATTEMPTS`` times without ending (the process died while it
        ran, each time) is marked failed instead."""
        resumed = []
        for job in self.store.all():
            if job.status not in UNFINISHED:
                continue
            if job.attempts >= MAX_ATTEMPTS:
                job.status = "failed"
                job.error = (
                    f"the job was started {job.attempts} times and the server stopped during "
                    "each run; it is not resumed again (the server's log may say why)"
                )
                log.error("audit job %s: %s", job.id, job.error)
                self.store.save(job)
                continue
            resumed.append(job.id)
            self.queue.put(job.id)
        if resumed:
            log.info("resuming %d audit job(s): %s", len(resumed), resumed)
        self.thread.start()
        return resumed

    def submit(self, job: Job) -> None:
        self.queue.put(job.id)

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in flight; the job in progress stays resumable."""
        self.stopping.set()
        self.queue.put(None)
        if self.thread.is_alive():
            self.thread.join(timeout)

    def progress(self, job: Job) -> tuple[int, int | None]:
        """(pairs done, total) for a job, live while it runs."""
        state = self.live.get(job.id)
        if state is None:
            return job.done, job.total
        return state.done_before + state.answered, state.total

    def _work(self) -> None:
        while not self.stopping.is_set():
            job_id = self.queue.get()
            if job_id is None or self.stopping.is_set():
                return
            try:
                self.run(self.store.get(job_id))
            except (JobStopped, *CANCELLED):
                log.info("audit job %s paused by shutdown; it resumes at next start", job_id)
            except Exception:  # noqa: BLE001 - run() records the failure in job.json
                log.exception("audit job %s failed", job_id)
            finally:
                if self.on_finish is not None:
                    self.on_finish(job_id)

    def run(self, job: Job) -> None:
        """Run (or resume) one job to its end, keeping ``job.json`` current."""
        from audit.finish import finish

        job.status, job.error = "running", None
        job.attempts += 1  # saved before any work: a crash during this run counts
        self.store.save(job)
        out = self.store.out_dir(job.id)
        questions = [Question(q["text"], q["yes_no"]) for q in job.questions]
        answer = self.answer_for(job)

        def checked(pairs: list) -> list[dict]:
            if self.stopping.is_set():
                raise JobStopped(job.id)
            return answer(pairs)

        def started(state: AuditProgress) -> None:
            self.live[job.id] = state
            job.total = state.total

        try:
            logs = ActivationLog(self.store.resolve_logs(job.logs))
            spec = AuditSpec(
                logs=str(logs.path),
                questions=job.questions,
                shard=job.shard,
                max_new_tokens=job.max_new_tokens,
            )
            state = run_audit(
                self.engine_info, logs, questions, out, tuple(job.shard), job.batch_size,
                job.max_new_tokens, spec, on_start=started, answer=checked,
            )  # fmt: skip
            job.summary = finish(out, logs, job.threshold, expected=state.total)
            job.done, job.total = job.summary["pairs"], state.total
            job.status = "done"
        except (JobStopped, *CANCELLED):
            self._record_progress(job)
            job.attempts -= 1  # a pause, not a failed attempt
            self.store.save(job)  # still "running": queued again at the next start
            raise
        except Exception as exc:
            self._record_progress(job)
            job.status = "failed"
            if isinstance(exc, OracleError):  # a known problem of the input: its own words
                job.error = self.store.relative(str(exc))
            else:  # a bug: the detail goes to the log (_work), the client gets no internals
                job.error = INTERNAL
            self.store.save(job)
            raise
        finally:
            self.live.pop(job.id, None)
        self.store.save(job)

    def _record_progress(self, job: Job) -> None:
        state = self.live.get(job.id)
        if state is not None:
            job.done, job.total = state.done_before + state.answered, state.total
