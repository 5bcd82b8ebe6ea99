"""What the serving benchmarks share: the personas and user turns they send, starting an
``oracle serve`` process and waiting for it, a tiny random oracle for quick runs, and the
engine's batch sizes read from ``/metrics`` (used by ``serve_load`` and its chat mode,
``serve_chat``)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

PERSONAS = [
    "You are a pirate.",
    "Act as a chef in every reply.",
    "You are a medieval knight.",
    "Answer as a cheerful robot.",
    "You are a grumpy librarian.",
    "Speak like a noir detective.",
    "You are an astronaut on the ISS.",
    "Respond as a Shakespearean actor.",
]
USER_TURNS = [
    "Hello! How are you today?",
    "What should I cook tonight?",
    "Tell me about the stars.",
    "Can you recommend a good book?",
    "What did you do this morning?",
]
QUESTIONS = ["What persona is the assistant playing?", "Is the assistant a pirate?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tiny_oracle(directory: Path) -> tuple[str, str]:
    """A tiny random Llama (head_dim 64, so vLLM's CPU attention takes it) and a LoRA oracle."""
    from oracle.adapter import add_oracle_lora, save_oracle
    from oracle.config import OracleConfig
    from oracle.tiny import build_tiny

    model, tok = build_tiny(
        "llama",
        hidden_size=128,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=256,
    )
    base = directory / "base"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    config = OracleConfig(base_model="../base", read_layers=[1], injection_site="layer:1")
    oracle = save_oracle(add_oracle_lora(model, r=4, alpha=8), tok, config, directory / "oracle")
    return str(base), str(oracle)


def start_server(args, target: str | None, oracle: str | None, port: int, log_path: Path):
    cmd = [sys.executable, "-c", "from oracle_cli import main; main()", "serve"]
    cmd += ["--engine", args.engine, "--port", str(port), "--host", "127.0.0.1"]
    cmd += ["--batch-size", str(args.batch_size), "--queue-depth", str(args.queue_depth)]
    longest = max(args.max_tokens, getattr(args, "oracle_tokens", 0), 1)
    cmd += ["--max-new-tokens", str(longest), "--timeout", str(args.timeout)]
    cmd += ["--log-level", "warning", "--dtype", args.dtype]
    cmd += ["--threads", str(args.server_threads or args.threads)]
    cmd += ["--batch-wait-ms", str(args.batch_wait_ms)]
    if target:
        cmd += ["--target", target]
    if oracle:
        cmd += ["--oracle", oracle]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), ORACLE_API_KEY="")
    log = open(log_path, "w")  # noqa: SIM115 - closed by the caller with the process
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float, log_path: Path) -> None:
    import httpx

    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not become healthy in time")


def batch_stats(url: str) -> dict[str, dict[str, float]]:
    """Engine calls and their mean batch size, by kind, from the server's /metrics."""
    import re

    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    stats: dict[str, dict[str, float]] = {}
    for field in ("count", "sum"):
        for kind, value in re.findall(
            rf'^oracle_batch_size_{field}{{kind="(\w+)"}} (\S+)$', text, re.M
        ):
            stats.setdefault(kind, {})[field] = float(value)
    return {
        kind: {
            "calls": v.get("count", 0.0),
            "mean_size": v.get("sum", 0.0) / max(1.0, v.get("count", 0.0)),
        }
        for kind, v in stats.items()
    }


async def post_retrying(session, url: str, body: dict, retries: int, statuses: dict) -> tuple:
    """POST ``body`` to ``url``; on 429 or 503 wait the server's Retry-After and try again, at
    most ``retries`` more times. Every status is counted in ``statuses``. Returns the last
    status, its JSON (200 only) and the last attempt's latency in seconds."""
    import asyncio

    for _attempt in range(retries + 1):
        start = time.perf_counter()
        async with session.post(url, json=body) as r:
            status = r.status
            retry = float(r.headers.get("Retry-After", "1"))
            data = await r.json() if status == 200 else None
        latency = time.perf_counter() - start
        statuses[status] = statuses.get(status, 0) + 1
        if status not in (429, 503):
            break
        await asyncio.sleep(retry)
    return status, data, latency
