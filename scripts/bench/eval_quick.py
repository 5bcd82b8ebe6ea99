"""The time of ``oracle eval --quick`` on the toy world (every suite and the ablations), the
budget the evaluation keeps: 5 minutes on 2 free cores.

    python -m scripts.bench.eval_quick --threads 2

Prints wall time, the process's CPU time and each suite's seconds per step. Run it alone:
other processes on the cores distort the figure.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=300.0, help="seconds of wall time")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from evals.evaluate import run_eval
    from evals.options import EvalOptions, run_spec

    start, cpu = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as out:
        # the default world's suites, oracle and ablation oracles, as `oracle eval --quick`
        options = EvalOptions(quick=True, device="cpu", out=out, feature_cache="none")
        results, _ = run_eval(run_spec(options, "oracle eval --quick", show_progress=False))
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    seconds = {name: s["seconds"] for name, s in results["suites"].items()}
    print(json.dumps({"wall_s": wall, "cpu_s": cpu, "threads": args.threads, "suites": seconds}))
    print(
        f"oracle eval --quick: {wall:.0f} s wall ({cpu:.0f} s CPU, {args.threads} threads); "
        f"budget {args.budget:.0f} s: {'met' if wall <= args.budget else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
