"""Finish an audit output directory: ``results.parquet``, ``summary.json`` and ``report.html``
from ``results.jsonl`` (rebuilt from scratch each time, so running it twice is harmless)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from audit.logformat import ActivationLog, write_atomic
from audit.report import build_report
from audit.results import ResultsFile, unique_rows, write_parquet
from audit.runner import RESULTS, RUN_FILE
from audit.tally import Tally

log = logging.getLogger(__name__)


def finish(
    out: str | Path,
    logs: ActivationLog | None = None,
    threshold: float = 0.5,
    expected: int | None = None,
) -> dict:
    """Write the derived files of ``out`` and return its summary.

    ``logs`` (the audited log) gives the report its record texts; without it, the log named
    in ``audit.json`` is opened if it still exists. ``expected`` is the number of pairs the
    run should hold (it sets ``complete`` in the summary).
    """
    out = Path(out)
    spec = json.loads((out / RUN_FILE).read_text()) if (out / RUN_FILE).is_file() else {}
    if logs is None and spec.get("logs") and Path(spec["logs"]).is_dir():
        try:
            logs = ActivationLog(spec["logs"])
        except ValueError as exc:
            log.warning("cannot open the audited log for the report's texts: %s", exc)
    questions = [q.get("text", q) if isinstance(q, dict) else q for q in spec.get("questions", [])]
    tally = Tally(threshold)
    read = 0

    def rows():  # streamed: results.jsonl is never held whole
        nonlocal read
        for row in ResultsFile(out / RESULTS).rows():
            read += 1
            yield row

    def tallied(rows):
        for row in rows:
            tally.add(row)
            yield row

    pairs = write_parquet(tallied(unique_rows(rows())), out / "results.parquet")
    if read != pairs:
        log.warning("%s holds %d duplicate pairs; kept the first of each", out, read - pairs)
    summary = {
        "pairs": pairs,
        "expected": expected,
        "complete": expected is not None and pairs == expected,
        "errors": tally.errors,
        "error_kinds": len(tally.error_causes),
        "questions": questions,
        "flag_threshold": threshold,
        "flagged": tally.flagged,
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(out / "report.html", build_report(tally, questions, logs))
    return summary
