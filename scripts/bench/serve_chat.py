"""The serving benchmark's chat-completions mode (``serve_load --mode chat``): OpenAI chat
completions per second against a real ``oracle serve``, without and with ``oracle`` questions,
and their ratio (what monitoring every reply costs).

One server; ``--clients`` concurrent clients each send ``--queries`` completions one after
another, greedy, ``--max-tokens`` reply tokens at most: first a warm-up (one completion per
client, with questions), then the plain phase (no ``oracle`` field), then the same
conversations with ``--questions`` oracle questions each (the phases alternate ``--rounds``
times, so that drift in the machine's load falls on both). The clients are aiohttp coroutines sending the OpenAI JSON by hand: the
official client costs far more CPU per request, and the clients share the cores with the
server.

    python -m scripts.bench.serve_load --mode chat --engine hf
    python -m scripts.bench.serve_load --mode chat --engine hf --tiny --clients 4 --queries 2
"""

from __future__ import annotations

import asyncio
import random
import statistics
import subprocess
import time
from pathlib import Path

from scripts.bench.proc_stats import TreeMemory, cpu_by_process, cpu_split, own_cpu_s

PERSONA_QUESTIONS = [
    "What persona is the assistant playing?",
    "Is the assistant a pirate?",
    "What is the assistant's secret word?",
    "Who is the assistant pretending to be?",
]


async def run_phase(url: str, args, questions: int, label: str, queries: int | None = None) -> dict:
    """``args.clients`` clients x ``queries`` (default ``args.queries``) completions;
    ``questions`` oracle questions on each (0: a plain completion)."""
    import aiohttp

    from scripts.bench.serve_common import PERSONAS, USER_TURNS, post_retrying

    rng = random.Random(args.seed)  # the same conversations in every phase
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    tokens = {"prompt": 0, "completion": 0, "oracle_answers": 0}

    async def client(c: aiohttp.ClientSession, k: int) -> None:
        for q in range(args.queries if queries is None else queries):
            body: dict = {
                "messages": [
                    {"role": "system", "content": rng.choice(PERSONAS)},
                    {"role": "user", "content": USER_TURNS[(k + q) % len(USER_TURNS)]},
                ],
                "max_tokens": args.max_tokens,
                "temperature": 0,
            }
            if questions:
                body["oracle"] = {
                    "questions": PERSONA_QUESTIONS[:questions],
                    "max_tokens": args.oracle_tokens,
                }
            status, data, latency = await post_retrying(
                c, f"{url}/v1/chat/completions", body, args.retries, statuses
            )
            if status == 200:
                latencies.append(latency)
                tokens["prompt"] += data["usage"]["prompt_tokens"]
                tokens["completion"] += data["usage"]["completion_tokens"]
                if questions:
                    tokens["oracle_answers"] += len(data["oracle"]["answers"])

    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=args.timeout + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c, k) for k in range(args.clients)))
        wall = time.perf_counter() - start
    ok = len(latencies)
    return {
        "phase": label,
        "questions": questions,
        "wall_s": wall,
        "completions_ok": ok,
        "completions_per_s": ok / wall,
        "completion_tokens_per_s": tokens["completion"] / wall,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p95_s": statistics.quantiles(latencies, n=20)[-1] if ok > 1 else None,
        "statuses": statuses,
        "bad_errors": sum(n for s, n in statuses.items() if s not in (200, 429, 503)),
        "tokens": tokens,
    }


def summarise(phases: list[dict]) -> dict:
    """Completions per second of each kind of phase (the median over rounds) and the ratio
    with oracle questions / without."""
    out: dict = {}
    for label in ("plain", "with_oracle"):
        runs = [p for p in phases if p["phase"] == label]
        out[label] = {
            "completions_per_s": statistics.median(p["completions_per_s"] for p in runs),
            "latency_p50_s": statistics.median(p["latency_p50_s"] or 0.0 for p in runs),
            "latency_p95_s": statistics.median(p["latency_p95_s"] or 0.0 for p in runs),
            "rounds": len(runs),
        }
    plain = out["plain"]["completions_per_s"]
    out["ratio_with_oracle_over_plain"] = out["with_oracle"]["completions_per_s"] / plain
    return out


def run_chat_mode(args, target: str | None, oracle: str | None, work: Path) -> dict:
    """Start the server, run the phases, stop it; the result for the benchmark's JSON."""
    from scripts.bench.serve_common import batch_stats, free_port, start_server, wait_healthy

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "server.log"
    proc, log = start_server(args, target, oracle, port, log_path)
    phases: list[dict] = []
    try:
        wait_healthy(url, proc, args.startup_timeout, log_path)
        asyncio.run(run_phase(url, args, args.questions, "warm-up", queries=1))
        with TreeMemory(proc.pid) as memory:
            for _ in range(args.rounds):
                for label, questions in (("plain", 0), ("with_oracle", args.questions)):
                    before, client_cpu = cpu_by_process(proc.pid), own_cpu_s()
                    phase = asyncio.run(run_phase(url, args, questions, label))
                    split = cpu_split(before, cpu_by_process(proc.pid))
                    phase["server_cpu_s_by_process"] = {n: round(s, 2) for n, s in split.items()}
                    phase["client_cpu_s"] = own_cpu_s() - client_cpu
                    phases.append(phase)
        engine_batches = batch_stats(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return {
        "mode": "chat",
        "summary": summarise(phases),
        "phases": phases,
        "peak_rss_bytes": memory.peak,
        "engine_batches": engine_batches,
        "bad_errors": sum(p["bad_errors"] for p in phases),
    }
