"""Serving benchmark: many concurrent HTTP clients against a real ``oracle serve`` on loopback.

Reports throughput, p50/p95 latency, peak memory of the server (its whole process tree) and
errors (only 429/503 are allowed, and retried after Retry-After), then the throughput of plain
generation on the same engine (the same oracle model generating the same number of tokens from
prompts of the same lengths, with no capture and no injection, fed as the server is loaded: hf
in micro-batches of --batch-size, vllm with --clients requests in flight) and the ratio of the
two, ``throughput_ratio["same_tokens_in"]`` (target >= 0.8). See :func:`plain_generation`.

    python -m scripts.bench.serve_load --engine hf                  # toy world, 64 clients x 10
    python -m scripts.bench.serve_load --engine vllm
    python -m scripts.bench.serve_load --engine hf --tiny --clients 8 --queries 2   # a quick check
    python -m scripts.bench.serve_load --engine vllm --world smol   # SmolLM2-135M-Instruct
    python -m scripts.bench.serve_load --mode chat --engine hf      # chat completions, see serve_chat

Run it alone: the machine's other processes distort the timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from scripts.bench.proc_stats import TreeMemory, cpu_by_process, cpu_split, own_cpu_s
from scripts.bench.serve_common import (  # noqa: E402
    PERSONAS,
    QUESTIONS,
    USER_TURNS,
    batch_stats,
    free_port,
    post_retrying,
    start_server,
    tiny_oracle,
    wait_healthy,
)


async def run_clients(url: str, args) -> dict:
    """``args.clients`` clients, each sending ``args.queries`` queries one after another.

    The clients use aiohttp: they share the machine's cores with the server, and httpx's
    client took about 11 ms of CPU per request here, a quarter of the two cores.
    """
    import aiohttp
    from tqdm import tqdm

    rng = random.Random(args.seed)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    usage = {"target_tokens": 0, "prompt_tokens": 0, "completion_tokens": 0}
    # (n_positions, completion tokens, target tokens) per query (one question each)
    shapes: list[tuple[int, int, int]] = []
    bar = tqdm(total=args.clients * args.queries, desc=f"{args.engine} queries", unit="q")

    async def client(c: aiohttp.ClientSession, k: int) -> None:
        for q in range(args.queries):
            body = {
                "messages": [
                    {"role": "system", "content": rng.choice(PERSONAS)},
                    {"role": "user", "content": USER_TURNS[(k + q) % len(USER_TURNS)]},
                ],
                "questions": [QUESTIONS[(k + q) % len(QUESTIONS)]],
                "max_tokens": args.max_tokens,
                "temperature": 0.0,
            }
            status, data, latency = await post_retrying(
                c, f"{url}/v1/query", body, args.retries, statuses
            )
            if status == 200:
                latencies.append(latency)
                for key in usage:
                    usage[key] += data["usage"][key]
                shapes.append(
                    (
                        len(data["positions"]),
                        data["usage"]["completion_tokens"],
                        data["usage"]["target_tokens"],
                    )
                )
            bar.update(1)

    connector = aiohttp.TCPConnector(limit=args.clients)
    timeout = aiohttp.ClientTimeout(total=args.timeout + 30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as c:
        start = time.perf_counter()
        await asyncio.gather(*(client(c, k) for k in range(args.clients)))
        wall = time.perf_counter() - start
    bar.close()
    ok = len(latencies)
    return {
        "wall_s": wall,
        "queries_ok": ok,
        "queries_per_s": ok / wall,
        "completion_tokens_per_s": usage["completion_tokens"] / wall,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "latency_p95_s": statistics.quantiles(latencies, n=20)[-1] if len(latencies) > 1 else None,
        "statuses": statuses,
        "bad_errors": sum(n for s, n in statuses.items() if s not in (200, 429, 503)),
        "usage": usage,
        "shapes": shapes,
    }


def plain_generation(args, target: str | None, oracle: str | None, shapes) -> dict[str, dict]:
    """The same engine's oracle model generating the same token counts with no capture or
    injection: random prompt tokens, EOS ignored, as many tokens out as each served answer took
    (its text and its EOS).

    Variants, each timed on one engine: ``oracle_prompt_only`` (prompts of the oracle prompt's
    length) and ``same_tokens_in`` (longer by the query's target tokens, so the plain run reads
    as many tokens in as the served query did: the ratio then measures the cost of capture and
    injection themselves). Both are fed as the server is loaded: hf in batches of
    ``--batch-size`` in arrival order (the server's micro-batches), vllm with ``--clients``
    requests in flight. vllm also gives ``same_tokens_in_all_at_once``: one offline
    ``LLM.generate`` of all the queries.
    """
    import torch

    from oracle.engines import create_engine

    torch.set_num_threads(args.threads)
    if target is None and oracle is None:
        from oracle.defaults import default_oracle

        oracle = str(default_oracle())
    kwargs = dict(dtype=args.dtype, batch_size=args.batch_size)
    if args.engine == "hf":
        kwargs["device"] = args.device
    engine = create_engine(args.engine, target, oracle, **kwargs)
    results = {}
    try:
        oracle_lengths = [engine.oracle_prompt_length(QUESTIONS[0], n) for n, _, _ in shapes]
        same_lengths = [n + t for n, (_, _, t) in zip(oracle_lengths, shapes, strict=True)]
        # The tokens the model generated: the answer's, plus the EOS that ended it (a decode
        # step like any other) when it stopped before the limit.
        news = [m + 1 if m < args.max_tokens else m for _, m, _ in shapes]
        rng = random.Random(args.seed)
        vocab = engine.oracle_vocab_size()
        variants = [
            ("oracle_prompt_only", oracle_lengths, args.clients),
            ("same_tokens_in", same_lengths, args.clients),
        ]
        if args.engine == "vllm":
            variants.append(("same_tokens_in_all_at_once", same_lengths, None))
        for name, lengths, concurrency in variants:
            prompts = [[rng.randrange(vocab) for _ in range(n)] for n in lengths]
            # warm-up, like the server's
            engine.generate_oracle_tokens(prompts[:1], news[:1], args.batch_size, concurrency)
            start = time.perf_counter()
            engine.generate_oracle_tokens(prompts, news, args.batch_size, concurrency)
            wall = time.perf_counter() - start
            results[name] = {
                "wall_s": wall,
                "queries_per_s": len(shapes) / wall,
                "generated_tokens_per_s": sum(news) / wall,
                "queries": len(shapes),
                "concurrency": concurrency if args.engine == "vllm" else args.batch_size,
            }
    finally:
        engine.close()
    return results


def write(result: dict, out: Path | None) -> None:
    """Print the result as JSON, and write it to ``out`` if given."""
    text = json.dumps(result, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)


def shown(path) -> str | None:
    """A model path as results record it: relative to the working directory when inside it
    (no machine paths in committed results)."""
    if path is None:
        return None
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--engine", choices=["hf", "vllm"], default="hf")
    parser.add_argument(
        "--mode",
        choices=["query", "chat"],
        default="query",
        help="query: /v1/query against plain generation; chat: /v1/chat/completions without "
        "and with oracle questions (scripts/bench/serve_chat.py)",
    )
    parser.add_argument("--questions", type=int, default=1, help="chat: oracle questions each")
    parser.add_argument("--oracle-tokens", type=int, default=16, help="chat: answer tokens")
    parser.add_argument("--rounds", type=int, default=2, help="chat: plain/oracle rounds")
    parser.add_argument("--target", default=None, help="default: the toy world")
    parser.add_argument("--oracle", default=None, help="default: the toy world")
    parser.add_argument(
        "--world",
        choices=["toy", "smol"],
        default=None,
        help="a named world (oracle.worlds): its oracle, on the oracle's own target; "
        "smol: SmolLM2-135M-Instruct (oracle models fetch smollm2-135m)",
    )
    parser.add_argument("--tiny", action="store_true", help="a tiny random oracle instead")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--queries", type=int, default=10, help="queries per client")
    parser.add_argument("--max-tokens", type=int, default=16, help="answer tokens per query")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, help="the server's")
    parser.add_argument("--queue-depth", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--retries", type=int, default=20, help="retries after 429/503")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--server-threads",
        type=int,
        default=None,
        help="torch threads of the server process itself (capture; hf answers); vLLM's "
        "engine processes keep --threads (default: --threads)",
    )
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--startup-timeout", type=float, default=600.0)
    parser.add_argument("--no-baseline", action="store_true", help="skip plain generation")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_serving_"))
    # with no --target the server runs the oracle on its own target (its base model)
    default_target = "the oracle's own base model" if args.world == "smol" else "toy world"
    target, oracle = args.target, args.oracle
    if args.world is not None:
        from oracle.worlds import resolve

        target, oracle = resolve(args.world, target, oracle)
    if args.tiny:
        target, oracle = tiny_oracle(work)
    if args.mode == "chat":
        from scripts.bench.serve_chat import run_chat_mode

        result = {"engine": args.engine, "args": {k: str(v) for k, v in vars(args).items()}}
        result["target"], result["oracle"] = (
            shown(target) or default_target,
            shown(oracle) or "toy world",
        )
        result.update(run_chat_mode(args, target, oracle, work))
        write(result, args.out)
        if result["bad_errors"]:
            raise SystemExit(f"{result['bad_errors']} responses were errors other than 429/503")
        return
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / "server.log"
    proc, log = start_server(args, target, oracle, port, log_path)
    try:
        wait_healthy(url, proc, args.startup_timeout, log_path)

        server_before, client_cpu = cpu_by_process(proc.pid), own_cpu_s()
        with TreeMemory(proc.pid) as memory:
            served = asyncio.run(run_clients(url, args))
        # CPU seconds each side used during the run (the clients share the machine's cores);
        # by process: the server's own (HTTP, capture, feeding) and vLLM's processes, if any.
        split = cpu_split(server_before, cpu_by_process(proc.pid))
        served["server_cpu_s"] = sum(split.values())
        served["server_cpu_s_by_process"] = {name: round(s, 2) for name, s in split.items()}
        served["client_cpu_s"] = own_cpu_s() - client_cpu
        served["peak_rss_bytes"] = memory.peak
        served["engine_batches"] = batch_stats(url)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    shapes = served.pop("shapes")
    result = {"engine": args.engine, "args": {k: str(v) for k, v in vars(args).items()}}
    result["target"], result["oracle"] = (
        shown(target) or default_target,
        shown(oracle) or "toy world",
    )
    result["world"] = args.world or ("toy" if args.target is None and args.oracle is None else None)
    result["serving"] = served
    if not args.no_baseline and shapes:
        # Both sides did the same work (the same queries, the same token counts), so the ratio
        # of their throughputs is the ratio of queries per second.
        result["plain_generation"] = plain_generation(args, target, oracle, shapes)
        result["throughput_ratio"] = {
            name: served["queries_per_s"] / plain["queries_per_s"]
            for name, plain in result["plain_generation"].items()
        }
    write(result, args.out)
    if served["bad_errors"]:
        raise SystemExit(f"{served['bad_errors']} responses were errors other than 429/503")


if __name__ == "__main__":
    main()
