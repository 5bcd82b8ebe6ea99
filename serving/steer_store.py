"""Steering jobs kept on disk, so that they survive a server restart (like audit jobs).

One JSON file per job, ``<dir>/<job_id>.json``, written atomically: the job as a poller sees
it (:class:`~serving.steer_schemas.SteerJob`, its vector once done), the request that made it
(so that an unfinished job can run again: a run is seeded, so it gives the same vector), and
its attempts (starts that did not end: a job that was running when the process died
``MAX_ATTEMPTS`` times is failed instead of started again at every start).

With ``--audit-root`` the directory is ``<root>/.oracle-jobs/steer`` (inside the audit jobs'
state directory, which no audit may read as a log); ``--steer-jobs DIR`` names another.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from serving.steer_schemas import SteerJob

log = logging.getLogger(__name__)

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_ATTEMPTS = 3
UNFINISHED = ("queued", "running")


class SteerJobStore:
    """``<dir>/<job_id>.json`` files: ``{"job": ..., "request": ..., "attempts": n}``; the
    directory is made with the first job."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)

    def path(self, job_id: str) -> Path:
        if not JOB_ID.match(job_id):
            raise KeyError(job_id)
        return self.dir / f"{job_id}.json"

    def save(self, job: SteerJob, request: dict, attempts: int) -> None:
        """Write the job's record atomically (a synced temp file, then a rename)."""
        record = {"job": job.model_dump(), "request": request, "attempts": attempts}
        path = self.path(job.job_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as f:
            json.dump(record, f)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)

    def delete(self, job_id: str) -> None:
        self.path(job_id).unlink(missing_ok=True)

    def load(self) -> list[tuple[SteerJob, dict, int]]:
        """Every readable job, oldest first: (job, request, attempts)."""
        found = []
        for path in self.dir.glob("*.json") if self.dir.is_dir() else []:
            if not JOB_ID.match(path.stem):
                continue
            try:
                record = json.loads(path.read_text())
                job = SteerJob.model_validate(record["job"])
                found.append((path.stat().st_mtime, job, record["request"], record["attempts"]))
            except (OSError, ValueError, KeyError, TypeError):
                log.warning("ignoring unreadable steering job file %s", path)
        return [
            (job, request, attempts)
            for _, job, request, attempts in sorted(found, key=lambda x: x[0])
        ]
