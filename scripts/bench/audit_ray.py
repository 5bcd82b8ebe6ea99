"""Audit benchmark, local vs Ray: pairs per second of the same audit run as `oracle audit` in
one process and as `oracle audit --ray` with 1 and 2 engine actors on a local Ray, each timed
end to end as a user runs it (start-up, engine loading, answers, report), and Ray's overhead
at 1 actor (its time over the local audit's; target <= 1.3), end to end and without the
start of the local Ray (read from Ray's own log line; a running cluster does not pay it).

    python -m scripts.bench.audit_ray [--records 1000] [--positions 48] [--max-new-tokens 16] \
        [--batch-size 16] [--threads 1] [--actors 1,2] [--ray-cpus 2] [--repeats 1] \
        [--json FILE] [--oracle DIR]

Records are synthetic (random activations of the oracle's width; the toy world's oracle if
shipped, else a tiny random one), asked the three questions of the audit tests. Every run
answers the same pairs with the same engine settings, and its results are checked (every
pair once, no error). Run it alone: other processes distort the timings. Needs the ray extra.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

QUESTIONS = [
    "Is the assistant playing a pirate?",
    "What persona is the assistant playing?",
    "Is there a system prompt?",
]


# The driver's line before `ray.init` and Ray's own once the local Ray is up (ms timestamps).
# (Not anchored: the progress bar shares their line.)
STAMP = r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
RAY_STARTING = re.compile(STAMP + r" INFO audit\.ray_runner: starting Ray")
RAY_STARTED = re.compile(STAMP + r"\s+INFO \S+ -- Started a local Ray instance")


def ray_start_seconds(stderr: str) -> float | None:
    """Seconds the command spent in `ray.init` starting its local Ray (None if not found)."""
    starting, started = RAY_STARTING.search(stderr), RAY_STARTED.search(stderr)
    if starting is None or started is None:
        return None
    at = [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f") for m in (starting, started)]
    return (at[1] - at[0]).total_seconds()


def audit(
    args: argparse.Namespace, logs: Path, oracle: Path, out: Path, ray: list[str]
) -> tuple[float, float | None]:
    """Run one `oracle audit` in a fresh process; returns its wall time in seconds and, for a
    Ray run, the part of it spent starting the local Ray."""
    cmd = [sys.executable, "-c", "from oracle_cli import main; main()", "audit",
           "--logs", str(logs), "--out", str(out), "--oracle", str(oracle),
           "--batch-size", str(args.batch_size), "--max-new-tokens", str(args.max_new_tokens),
           "--dtype", "float32", "--device", "cpu",
           *[a for q in QUESTIONS for a in ("--question", q)], *ray]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), TOKENIZERS_PARALLELISM="false",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stderr[-3000:])
        raise SystemExit(f"{' '.join(ray) or 'the local audit'} failed (exit {proc.returncode})")
    summary = json.loads((out / "summary.json").read_text())
    pairs = args.records * len(QUESTIONS)
    if not (summary["complete"] and summary["pairs"] == pairs and summary["errors"] == 0):
        raise SystemExit(f"{out}: {summary}")
    return seconds, ray_start_seconds(proc.stderr) if ray else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--positions", type=int, default=48)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1, help="torch threads, local and per actor")
    parser.add_argument("--actors", default="1,2", help="pool sizes to run on Ray")
    parser.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray")
    parser.add_argument("--oracle", default=None)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each; the fastest counts")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument("--work", default=None, help="keep the log and outputs here")
    args = parser.parse_args()
    from audit.synthetic import write_synthetic_log
    from oracle.config import OracleConfig
    from scripts.bench.audit_load import default_oracle_or_tiny

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="bench_audit_ray_"))
    oracle = Path(args.oracle) if args.oracle else default_oracle_or_tiny(work)
    d_model = OracleConfig.load(oracle).d_model
    logs = work / f"log_{args.records}x{args.positions}"
    write_synthetic_log(logs, args.records, d_model, args.positions, shard_records=64)
    pairs = args.records * len(QUESTIONS)
    print(f"oracle {oracle} (d_model {d_model}); {args.records} records x {len(QUESTIONS)} "
          f"questions = {pairs} pairs, {args.positions} positions, max_new_tokens "
          f"{args.max_new_tokens}, batch {args.batch_size}, {args.threads} thread(s) per "
          f"engine, local Ray of {args.ray_cpus} CPUs", flush=True)  # fmt: skip
    runs: dict[str, dict] = {}
    stamp = time.strftime("%H%M%S")

    def timed(name: str, ray: list[str]) -> dict:
        best: dict = {}
        for r in range(args.repeats):  # the fastest of the repeats: the least disturbed
            seconds, up = audit(args, logs, oracle, work / f"{name}_{stamp}_{r}", ray)
            if not best or seconds < best["seconds"]:
                best = {"seconds": seconds, "ray_start_s": up, "pairs_per_s": pairs / seconds}
        return best

    runs["local"] = local = timed("local", [])
    print(f"local audit      : {local['pairs_per_s']:7.2f} pairs/s ({local['seconds']:.1f} s)",
          flush=True)  # fmt: skip
    for n in (int(x) for x in args.actors.split(",")):
        cpus = max(args.ray_cpus, n * args.threads)
        ray = ["--ray", "--ray-cpus", str(cpus), "--ray-actors", str(n),
               "--ray-threads", str(args.threads)]  # fmt: skip
        runs[f"ray{n}"] = run = timed(f"ray{n}", ray)
        up = run["ray_start_s"]
        print(f"ray, {n} actor(s)  : {run['pairs_per_s']:7.2f} pairs/s ({run['seconds']:.1f} s, "
              f"of which {up if up is not None else float('nan'):.1f} s starting the local Ray) "
              f"= {run['pairs_per_s'] / local['pairs_per_s']:.2f}x the local audit's rate",
              flush=True)  # fmt: skip
    if "ray1" in runs:
        ray1 = runs["ray1"]
        ratio = ray1["seconds"] / local["seconds"]
        runs["overhead_1_actor"] = ratio
        print(f"Ray's overhead at 1 actor: {ratio:.2f}x the local audit's time, end to end "
              f"(target <= 1.3: {'met' if ratio <= 1.3 else 'NOT met'})")  # fmt: skip
        if ray1["ray_start_s"] is not None:
            warm = (ray1["seconds"] - ray1["ray_start_s"]) / local["seconds"]
            runs["overhead_1_actor_without_ray_start"] = warm
            verdict = "met" if warm <= 1.3 else "NOT met"
            print(f"  without starting the local Ray (once per cluster, not per audit on a "
                  f"running one): {warm:.2f}x (target <= 1.3: {verdict})")  # fmt: skip
    if args.json:
        setup = {k: getattr(args, k) for k in ("records", "positions", "max_new_tokens",
                 "batch_size", "threads", "ray_cpus", "repeats")}  # fmt: skip
        Path(args.json).write_text(json.dumps({"setup": setup, "runs": runs}, indent=2) + "\n")
    if not args.work:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
