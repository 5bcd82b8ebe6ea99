"""Mixed-load benchmark (issue 18): interactive queries while long work and a hostile client
run against the same ``oracle serve``.

Two phases on one server, in one run:

1. idle: ``--clients`` clients each send ``--queries`` queries (``/v1/query``, one question),
   nothing else running;
2. loaded: the same clients and queries while a steering job (``/v1/steer``, background), an
   audit job (``/v1/audit`` over a synthetic log under the server's audit root) and a hostile
   client (:mod:`scripts.bench.mixed_hostile`: maximum-size bodies without the key, bodies over
   the limit, slow bodies, text and tokens over the caps, bad tensors) run at the same time.

It prints JSON: the queries' p50/p95 latency in each phase and the ratio of the p95s (target
<= 2), every status seen (target: no 5xx), the hostile requests' statuses and max latency
(target: all 4xx, each within 1 s), the server's memory (its process tree's RSS) at the start
and end of the loaded phase and its peak, and how far the long work got meanwhile.

Threads are pinned: the server runs with ``--threads`` torch threads and that
``OMP_NUM_THREADS``, optionally on ``--server-cpus``; this process (the clients) on
``--client-cpus``. Run it alone on a quiet machine:

    python -m scripts.bench.mixed_load --server-cpus 0,1 --client-cpus 2,3  # toy world
    python -m scripts.bench.mixed_load --tiny --clients 2 --queries 2 --steer-steps 3 \\
        --audit-records 4 --hostile-rounds 1                               # a quick check
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scripts.bench.mixed_hostile import hostile_client, hostile_requests, summarise
from scripts.bench.proc_stats import TreeMemory, tree_sum
from scripts.bench.serve_common import PERSONAS, QUESTIONS, USER_TURNS, free_port, tiny_oracle

API_KEY = "mixed-load-bench"


def cpus(text: str | None) -> set[int] | None:
    return {int(c) for c in text.split(",")} if text else None


def start_server(args, target, oracle, port: int, root: Path, log_path: Path):
    cmd = [sys.executable, "-c", "from oracle_cli import main; main()", "serve"]
    cmd += ["--port", str(port), "--host", "127.0.0.1", "--audit-root", str(root)]
    cmd += ["--threads", str(args.threads), "--log-level", "warning", "--dtype", args.dtype]
    cmd += ["--body-timeout", str(args.body_timeout), "--timeout", str(args.timeout)]
    cmd += ["--max-new-tokens", str(max(args.max_tokens, 4))]
    for flag, value in (("--target", target), ("--oracle", oracle), ("--world", args.world)):
        if value:
            cmd += [flag, value]
    # the key through the environment, never on the command line
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), ORACLE_API_KEY=API_KEY)
    pinned = cpus(args.server_cpus)
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller with the process
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=(lambda: os.sched_setaffinity(0, pinned)) if pinned else None,  # noqa: PLW1509
    )
    return proc, log


def p95(values: list[float]) -> float | None:
    if len(values) < 2:
        return values[0] if values else None
    return statistics.quantiles(values, n=20)[-1]


class Run:
    """The HTTP side of the benchmark: one aiohttp session and every status it saw."""

    def __init__(self, session, url: str) -> None:
        self.session, self.url = session, url
        self.statuses: dict[str, int] = {}

    def count(self, status: int) -> None:
        self.statuses[str(status)] = self.statuses.get(str(status), 0) + 1

    async def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with self.session.request(method, self.url + path, json=body, headers=headers) as r:
            self.count(r.status)
            data = await r.json(content_type=None)
            return r.status, data

    async def queries(self, clients: int, queries: int, max_tokens: int) -> list[float]:
        """Latencies of the queries that got 200 (each retried after 429, as asked)."""
        latencies: list[float] = []

        async def client(k: int) -> None:
            for q in range(queries):
                body = {
                    "messages": [
                        {"role": "system", "content": PERSONAS[(k + q) % len(PERSONAS)]},
                        {"role": "user", "content": USER_TURNS[(k * 7 + q) % len(USER_TURNS)]},
                    ],
                    "questions": [QUESTIONS[(k + q) % len(QUESTIONS)]],
                    "max_tokens": max_tokens,
                    "temperature": 0.0,
                }
                for _ in range(20):
                    start = time.perf_counter()
                    status, data = await self.call("POST", "/v1/query", body)
                    if status != 429:
                        break
                    await asyncio.sleep(1.0)
                if status == 200:
                    latencies.append(time.perf_counter() - start)

        await asyncio.gather(*(client(k) for k in range(clients)))
        return latencies


async def loaded_phase(run: Run, args, models: dict, host: str, port: int) -> dict:
    """Start the long work, wait until it runs, then the clients and the hostile client."""
    steer = {
        "prompts": ["Hello there", "What should I cook tonight?", "Tell me about the stars."],
        "question": QUESTIONS[0],
        "answer": "A pirate.",
        "read": "prompt",
        "apply": "all",
        "steps": args.steer_steps,
        "background": True,
    }
    status, steer_job = await run.call("POST", "/v1/steer", steer)
    assert status == 202, steer_job
    audit = {"logs": "logs", "questions": QUESTIONS, "max_tokens": 4, "batch_size": 16}
    status, audit_job = await run.call("POST", "/v1/audit", audit)
    assert status == 202, audit_job
    steer_path, audit_path = f"/v1/steer/{steer_job['job_id']}", f"/v1/audit/{audit_job['id']}"
    deadline = time.time() + args.timeout
    while time.time() < deadline:  # both running before the clients start
        _, s = await run.call("GET", steer_path)
        _, a = await run.call("GET", audit_path + "?limit=0")
        if s["status"] != "queued" and a["status"] != "queued":
            break
        await asyncio.sleep(0.05)
    steps_before, pairs_before = s["steps_done"], a["done"]
    clients_done = asyncio.Event()
    hostile = asyncio.create_task(
        hostile_client(
            host,
            port,
            hostile_requests(models["limits"], models["d_model"]),
            API_KEY,
            lambda: not clients_done.is_set(),
            args.hostile_rounds,
        )
    )
    start = time.perf_counter()
    latencies = await run.queries(args.clients, args.queries, args.max_tokens)
    wall = time.perf_counter() - start
    clients_done.set()
    seen = await hostile
    _, s = await run.call("GET", steer_path)
    _, a = await run.call("GET", audit_path + "?limit=0")
    long_work = {
        "steer_status": s["status"],
        "steer_steps_during_queries": s["steps_done"] - steps_before,
        "audit_status": a["status"],
        "audit_pairs_during_queries": a["done"] - pairs_before,
    }
    if s["status"] in ("queued", "running"):  # stopped between two steps
        status, cancelled = await run.call("DELETE", steer_path)
        long_work["steer_cancel"] = (status, cancelled["status"])
    return {"latencies": latencies, "wall_s": wall, "hostile": seen, "long_work": long_work}


async def benchmark(args, url: str, pid: int) -> dict:
    import aiohttp

    from audit.synthetic import write_synthetic_log

    host, port = url.removeprefix("http://").split(":")
    connector = aiohttp.TCPConnector(limit=args.clients + 4)
    timeout = aiohttp.ClientTimeout(total=args.timeout + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        run = Run(session, url)
        _, models = await run.call("GET", "/v1/models")
        write_synthetic_log(
            args.root / "logs", args.audit_records, d_model=models["d_model"], n_positions=8
        )
        await run.queries(2, 2, args.max_tokens)  # warm-up
        idle = await run.queries(args.clients, args.queries, args.max_tokens)

        def rss() -> int:
            import psutil

            return int(tree_sum(psutil.Process(pid), lambda p: p.memory_info().rss))

        rss_start = rss()
        with TreeMemory(pid) as memory:
            loaded = await loaded_phase(run, args, models, host, int(port))
        rss_end = rss()
    hostile = summarise(loaded["hostile"])
    p95_idle, p95_loaded = p95(idle), p95(loaded["latencies"])
    server_errors = sum(n for s, n in run.statuses.items() if s.startswith("5"))
    for kind in hostile["by_kind"].values():
        server_errors += sum(n for s, n in kind["statuses"].items() if s.startswith("5"))
    return {
        "queries": {
            "idle": {"ok": len(idle), "p50_s": statistics.median(idle), "p95_s": p95_idle},
            "loaded": {
                "ok": len(loaded["latencies"]),
                "p50_s": statistics.median(loaded["latencies"]),
                "p95_s": p95_loaded,
                "wall_s": loaded["wall_s"],
            },
            "p95_ratio_loaded_over_idle": p95_loaded / p95_idle,
        },
        "statuses": run.statuses,
        "server_errors_5xx": server_errors,
        "hostile": hostile,
        "memory": {
            "rss_loaded_start_bytes": rss_start,
            "rss_loaded_end_bytes": rss_end,
            "rss_peak_bytes": memory.peak,
            "growth_bytes": rss_end - rss_start,
        },
        "long_work": loaded["long_work"],
        "targets_met": {
            "no_5xx": server_errors == 0,
            "hostile_all_4xx_within_1s": hostile["not_4xx"] == 0 and hostile["max_latency_s"] <= 1,
            "p95_at_most_2x_idle": p95_loaded <= 2 * p95_idle,
        },
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default=None, help="default: the toy world")
    parser.add_argument("--oracle", default=None, help="default: the toy world")
    parser.add_argument("--world", choices=["toy", "smol"], default=None)
    parser.add_argument("--tiny", action="store_true", help="a tiny random oracle instead")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--queries", type=int, default=10, help="queries per client per phase")
    parser.add_argument("--max-tokens", type=int, default=8, help="answer tokens per query")
    parser.add_argument(
        "--steer-steps",
        type=int,
        default=500,
        help="the most a request may ask; cancelled at the end",
    )
    parser.add_argument("--audit-records", type=int, default=2000)
    parser.add_argument("--hostile-rounds", type=int, default=None, help="default: until done")
    parser.add_argument("--threads", type=int, default=2, help="the server's torch threads")
    parser.add_argument("--server-cpus", default=None, help="pin the server: '0,1'")
    parser.add_argument("--client-cpus", default=None, help="pin this process: '2'")
    parser.add_argument("--body-timeout", type=float, default=0.5, help="the server's")
    parser.add_argument("--timeout", type=float, default=60.0, help="the server's")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args(argv)
    if cpus(args.client_cpus):
        os.sched_setaffinity(0, cpus(args.client_cpus))
    os.environ["OMP_NUM_THREADS"] = "1"  # the clients need no torch threads

    from scripts.bench.serve_common import wait_healthy

    work = Path(tempfile.mkdtemp(prefix="bench_mixed_"))
    args.root = work / "audit"
    args.root.mkdir()
    target, oracle = tiny_oracle(work) if args.tiny else (args.target, args.oracle)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "server.log"
    proc, log = start_server(args, target, oracle, port, args.root, log_path)
    try:
        wait_healthy(url, proc, args.startup_timeout, log_path)
        result = asyncio.run(benchmark(args, url, proc.pid))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    result["args"] = {k: str(v) for k, v in vars(args).items() if k != "root"}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
