"""Join the outputs of an audit split with ``--shard i/n`` into one output directory."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from audit.logformat import ActivationLog, write_atomic
from audit.results import RESULT_FIELDS, ResultsFile, unique_rows
from audit.runner import RESULTS, RUN_FILE
from oracle.errors import OracleInputError

log = logging.getLogger(__name__)


def merge_outputs(inputs: list[str | Path], out: str | Path) -> dict:
    """Merge the shard outputs ``inputs`` into ``out`` (``results.jsonl`` and ``audit.json``).

    The inputs must be audits of the same log with the same questions; their shards must be
    distinct parts of one split (a missing part is reported in the returned dict, not fatal,
    so that a partial view can still be read). Each (record, question) pair appears once.
    Returns ``{"pairs", "shards", "missing_shards", "spec"}``.
    """
    if not inputs:
        raise OracleInputError("give at least one audit output directory to merge")
    out = Path(out)
    specs = []
    for d in map(Path, inputs):
        if d.resolve() == out.resolve():
            raise OracleInputError(f"the merge output {out} cannot also be an input")
        if not (d / RUN_FILE).is_file():
            raise OracleInputError(f"{d} is not an audit output (no {RUN_FILE})")
        specs.append(json.loads((d / RUN_FILE).read_text()))
    first = specs[0]
    for d, spec in zip(inputs, specs, strict=True):
        for key in ("logs", "questions", "oracle", "target", "max_new_tokens", "max_positions"):
            if spec.get(key) != first.get(key):
                raise OracleInputError(
                    f"{d} audits another {key} than {inputs[0]}; only shards of one audit merge"
                )
    shards = [tuple(s.get("shard", [0, 1])) for s in specs]
    if len(set(shards)) != len(shards):
        raise OracleInputError(f"the same shard appears twice among the inputs: {shards}")
    counts = {n for _, n in shards}
    if len(counts) != 1:
        raise OracleInputError(f"the inputs split the log differently: {shards}")
    n = counts.pop()
    missing = sorted(set(range(n)) - {i for i, _ in shards})
    if missing:
        log.warning("merging without shard(s) %s of %d: the result is partial", missing, n)
    if (out / RESULTS).exists():
        raise OracleInputError(f"{out / RESULTS} exists; merge into a new directory")
    out.mkdir(parents=True, exist_ok=True)
    rows = unique_rows(r for d in inputs for r in ResultsFile(Path(d) / RESULTS).rows())
    tmp = out / (RESULTS + ".tmp")
    pairs = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for r in rows:  # streamed: only the pairs' keys are held
            f.write(json.dumps({k: r.get(k) for k in RESULT_FIELDS}, ensure_ascii=False) + "\n")
            pairs += 1
    tmp.replace(out / RESULTS)
    spec = dict(first, shard=[0, 1], merged_from=[str(Path(d).resolve()) for d in inputs])
    if missing:
        spec["missing_shards"] = [[i, n] for i in missing]
    write_atomic(out / RUN_FILE, json.dumps(spec, indent=2) + "\n")
    return {"pairs": pairs, "shards": n, "missing_shards": missing, "spec": spec}


def expected_pairs(spec: dict) -> int | None:
    """Pairs a whole-log audit of ``spec`` should hold, if its log is still readable."""
    try:
        logs = ActivationLog(spec["logs"])
    except (KeyError, ValueError):
        return None
    return len(spec["questions"]) * sum(len(logs.record_ids(s)) for s in logs.shards)
