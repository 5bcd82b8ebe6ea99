"""Finish an audit output directory: ``results.parquet``, ``summary.json`` and ``report.html``
from ``results.jsonl`` (rebuilt from scratch each time, so running it twice is harmless)."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

from audit.logformat import ActivationLog, write_atomic
from audit.report import build_report
from audit.results import ResultsFile, unique_rows, write_parquet
from audit.runner import RESULTS, RUN_FILE

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
    rows = list(ResultsFile(out / RESULTS).rows())
    unique = unique_rows(rows)
    if len(unique) != len(rows):
        log.warning(
            "%s holds %d duplicate pairs; kept the first of each", out, len(rows) - len(unique)
        )
    questions = [q.get("text", q) if isinstance(q, dict) else q for q in spec.get("questions", [])]
    write_parquet(unique, out / "results.parquet")
    errors = Counter(r["error"] for r in unique if r.get("error"))
    summary = {
        "pairs": len(unique),
        "expected": expected,
        "complete": expected is not None and len(unique) == expected,
        "errors": sum(errors.values()),
        "error_kinds": len(errors),
        "questions": questions,
        "flag_threshold": threshold,
        "flagged": sum(1 for r in unique if r.get("p_yes") is not None and r["p_yes"] >= threshold),
    }
    write_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_atomic(out / "report.html", build_report(unique, questions, logs, threshold))
    return summary
