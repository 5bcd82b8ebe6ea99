"""``POST /v1/audit`` (start a job), ``GET /v1/audit/{id}`` (status and results),
``GET /v1/audit/{id}/report`` (the job's report.html).

Jobs audit logs under the server's ``--audit-root`` (paths outside it are refused with 403) and
live on disk in ``<root>/.oracle-jobs/<id>/`` (see :mod:`audit.jobs`). They are admitted in the
``audit`` lane (at most ``--max-jobs`` queued and running, 429 beyond), with the server's
limits on questions, answer length and batch size, and run one at a time on a background
thread whose batches are steps of the engine's long lane (between the queries' batches).
A record longer than ``--max-tokens`` positions becomes an error row without reaching the
engine. On start-up, jobs a previous process left unfinished are resumed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from audit.jobs import JobRunner, JobStore, PathOutsideRoot
from audit.questions import make_questions
from audit.results import ResultsFile
from audit.runner import RESULTS, answer_pairs, parse_shard, result_row
from serving.errors import NotFound, ServiceError
from serving.schemas import MAX_QUESTION, texts

log = logging.getLogger(__name__)


class Forbidden(ServiceError):
    status_code = 403
    error_type = "forbidden"


class AuditsDisabled(ServiceError):
    status_code = 404
    error_type = "not_found"


AuditQuestions = texts("question", 64, MAX_QUESTION, "questions asked of every record")


class AuditRequest(BaseModel):
    """Start an audit of a log under the server's audit root."""

    model_config = ConfigDict(extra="forbid")
    logs: str = Field(
        min_length=1, max_length=4096, description="log directory, relative to the audit root"
    )
    questions: AuditQuestions  # type: ignore[valid-type]
    yes_no: Literal["auto", "all", "none"] = Field(
        default="auto", description="which questions get P(yes): auto (Is/Does/...), all, none"
    )
    max_tokens: int = Field(default=16, ge=1, description="longest answer, in tokens")
    batch_size: int = Field(
        default=16, ge=1, description="pairs per engine call (at most the server's --batch-size)"
    )
    shard: str | None = Field(default=None, description="I/N: audit only part I of N")
    threshold: float = Field(
        default=0.5, ge=0.0, le=1.0, description="P(yes) at which the report flags a record"
    )


class AuditJobOut(BaseModel):
    """A job's status; ``results`` is a page of result rows (``offset``/``limit``)."""

    id: str
    status: Literal["queued", "running", "done", "failed"]
    logs: str
    questions: list[str]
    created: str
    updated: str
    done: int = Field(description="pairs finished")
    total: int | None = Field(description="pairs in the audit (known once it started)")
    error: str | None = None
    summary: dict | None = None
    report_url: str | None = None
    results: list[dict] = Field(default_factory=list)
    offset: int = 0


def _runner(request: Request) -> JobRunner:
    runner = getattr(request.app.state, "audit_jobs", None)
    if runner is None:
        raise AuditsDisabled("this server keeps no audit jobs: start it with --audit-root DIR")
    return runner


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the job store, start the worker and resume unfinished jobs (if an audit root is set)."""
    root = getattr(app.state.settings, "audit_root", None)
    if not root:
        yield
        return
    service = app.state.service
    loop = asyncio.get_running_loop()
    lane = service.lanes["audit"]
    limit = service.limits.max_tokens

    def answer_for(job):
        def answer(pairs: list) -> list[dict]:
            rows: dict[int, dict] = {}
            for k, (record, q) in enumerate(pairs):
                n = 0 if record.activations is None else record.activations.shape[0]
                if n > limit:  # refused before it reaches the engine
                    rows[k] = result_row(
                        record, q, error=f"the record has {n} positions, more than the "
                        f"server's limit of {limit} (--max-tokens)"
                    )  # fmt: skip
            good = [p for k, p in enumerate(pairs) if k not in rows]
            if good:
                step = service.long_step(
                    lambda engine: answer_pairs(engine, good, job.max_new_tokens)
                )
                answered = iter(asyncio.run_coroutine_threadsafe(step, loop).result())
                for k in range(len(pairs)):
                    if k not in rows:
                        rows[k] = next(answered)
            return [rows[k] for k in range(len(pairs))]

        return answer

    def finished(_job_id: str) -> None:
        loop.call_soon_threadsafe(lane.leave)

    runner = JobRunner(JobStore(root), service.engine, answer_for, on_finish=finished)
    app.state.audit_jobs = runner
    for _ in runner.start():
        lane.enter(force=True)  # resumed jobs hold their places in the lane
    try:
        yield
    finally:
        # joined off the event loop: the worker may be waiting on a batch that needs the loop.
        await asyncio.to_thread(runner.stop)
        app.state.audit_jobs = None


router = APIRouter(tags=["audit"], lifespan=lifespan)
ERRORS = {
    400: {"description": "bad input (the message names the problem)"},
    403: {"description": "the logs path is outside the server's audit root"},
    404: {"description": "unknown job, or the server keeps no audit jobs"},
    422: {"description": "a field fails validation"},
}


@router.post("/v1/audit", response_model=AuditJobOut, status_code=202, responses=ERRORS)
async def start_audit(body: AuditRequest, request: Request) -> AuditJobOut:
    """Queue an audit of ``logs`` (under the audit root) with ``questions``; poll its URL."""
    runner = _runner(request)
    service = request.app.state.service
    limits = service.limits
    limits.chars(body.questions)
    limits.questions(body.questions)
    limits.new_tokens(body.max_tokens)
    limits.batch(body.batch_size)
    questions = make_questions(body.questions, body.yes_no)
    lane = service.lanes["audit"]
    lane.enter()  # 429 when the lane is full; left when the job ends
    try:
        job = await asyncio.to_thread(
            runner.store.create,
            body.logs,
            questions,
            body.max_tokens,
            body.batch_size,
            parse_shard(body.shard),
            body.threshold,
            runner.engine_info.d_model,
        )
    except PathOutsideRoot as exc:
        lane.leave()
        raise Forbidden(str(exc)) from None
    except BaseException:
        lane.leave()
        raise
    runner.submit(job)
    return _job_out(runner, job, [], 0)


@router.get("/v1/audit/{job_id}", response_model=AuditJobOut, responses=ERRORS)
async def get_audit(
    job_id: str,
    request: Request,
    offset: int = Query(0, ge=0, description="first result row to return"),
    limit: int = Query(100, ge=0, le=10_000, description="most result rows to return"),
) -> AuditJobOut:
    """The job's status, progress, summary (when done) and a page of its result rows."""
    runner = _runner(request)
    try:
        job = runner.store.get(job_id)
    except KeyError:
        raise NotFound(f"no audit job {job_id!r}") from None
    rows = await asyncio.to_thread(_page, runner, job_id, offset, limit)
    return _job_out(runner, job, rows, offset)


@router.get("/v1/audit/{job_id}/report", response_class=FileResponse, responses=ERRORS)
async def get_report(job_id: str, request: Request) -> FileResponse:
    """The job's report.html (404 until the job is done)."""
    runner = _runner(request)
    try:
        runner.store.get(job_id)
    except KeyError:
        raise NotFound(f"no audit job {job_id!r}") from None
    path = runner.store.out_dir(job_id) / "report.html"
    if not path.is_file():
        raise NotFound(f"audit job {job_id} has no report yet")
    return FileResponse(path, media_type="text/html")


def _page(runner: JobRunner, job_id: str, offset: int, limit: int) -> list[dict]:
    path = runner.store.out_dir(job_id) / RESULTS
    if limit == 0 or not path.is_file():
        return []
    rows = []
    for i, row in enumerate(ResultsFile(path, repair=False).rows()):
        if i >= offset + limit:
            break
        if i >= offset:
            if isinstance(row.get("error"), str):  # paths in a reader's message: relative
                row["error"] = runner.store.relative(row["error"])
            rows.append(row)
    return rows


def _job_out(runner: JobRunner, job, rows: list[dict], offset: int) -> AuditJobOut:
    done, total = runner.progress(job)
    return AuditJobOut(
        id=job.id,
        status=job.status,
        logs=job.logs,
        questions=[q["text"] for q in job.questions],
        created=job.created,
        updated=job.updated,
        done=done,
        total=total,
        error=job.error,
        summary=job.summary,
        report_url=f"/v1/audit/{job.id}/report" if job.status == "done" else None,
        results=rows,
        offset=offset,
    )
