"""The hostile client of the mixed-load benchmark (:mod:`scripts.bench.mixed_load`).

Each request is written by hand on its own connection (``Connection: close``), so that it can
be what no well-behaved client sends: a body of the server's maximum size without the key, a
body over the limit (announced or chunked), one that trickles in, text over the character
cap, an input over the token limit, tensors of the wrong shape, with NaN, or with the wrong
number of bytes. Each should get a 4xx at once (the slow body: at ``--body-timeout``); the
benchmark records each one's status and latency. A connection the server resets after its
answer counts as that answer; one reset before any answer counts as status 0.
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Hostile:
    """A hostile request: its name, its expected status, how it is sent."""

    name: str
    expect: int
    path: str
    body: bytes = b""
    key: bool = True
    chunked: bool = False
    trickle_s: float | None = None  # seconds between the bytes of a slow body
    extra_headers: dict[str, str] = field(default_factory=dict)


def encoded(shape: list[int], values: list[float] | None = None, extra_bytes: int = 0) -> dict:
    n = 1
    for d in shape:
        n *= d
    values = values if values is not None else [0.1] * n
    raw = struct.pack(f"<{len(values)}f", *values) + b"\0" * extra_bytes
    return {"data": base64.b64encode(raw).decode(), "shape": shape, "dtype": "float32"}


def hostile_requests(limits: dict, d_model: int) -> list[Hostile]:
    """One of each hostile request, sized from the server's ``limits`` (GET /v1/models)."""
    max_body, max_chars = limits["max_body_bytes"], limits["max_chars"]
    questions = ["What persona is the assistant playing?"]

    def js(obj: dict) -> bytes:
        return json.dumps(obj).encode()

    def padded(size: int) -> bytes:  # a JSON query body of exactly ``size`` bytes
        head, tail = b'{"questions": ["q"], "prompt": "', b'"}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    return [
        Hostile("keyless_max_body", 401, "/v1/query", padded(max_body), key=False),
        Hostile("max_body_plus_one", 413, "/v1/query", padded(max_body + 1)),
        Hostile("max_body_chunked", 413, "/v1/query", padded(max_body + 1), chunked=True),
        Hostile("slow_body", 408, "/v1/query", padded(1000), trickle_s=0.05),
        Hostile(
            "chars_over_cap",
            400,
            "/v1/query",
            js({"prompt": "a" * (max_chars + 1), "questions": questions}),
        ),
        Hostile(
            "tokens_over_limit",  # within the character cap, far over --max-tokens
            400,
            "/v1/query",
            js({"prompt": "a " * (max_chars // 2 - 10), "questions": questions}),
        ),
        Hostile(
            "too_many_questions",
            400,
            "/v1/oracle",
            js(
                {
                    "activations": encoded([1, d_model]),
                    "questions": questions * (limits["max_questions"] + 1),
                }
            ),
        ),
        Hostile(
            "tensor_wrong_width",
            400,
            "/v1/oracle",
            js({"activations": encoded([2, d_model + 1]), "questions": questions}),
        ),
        Hostile(
            "tensor_nan",
            400,
            "/v1/oracle",
            js(
                {
                    "activations": encoded([1, d_model], [float("nan")] * d_model),
                    "questions": questions,
                }
            ),
        ),
        Hostile(
            "tensor_wrong_bytes",
            400,
            "/v1/oracle",
            js({"activations": encoded([2, d_model], extra_bytes=7), "questions": questions}),
        ),
        Hostile(
            "tensor_too_many_positions",
            400,
            "/v1/oracle",
            js(
                {
                    "activations": encoded([limits["max_tokens"] + 1, d_model]),
                    "questions": questions,
                }
            ),
        ),
    ]


async def send(host: str, port: int, request: Hostile, api_key: str, timeout: float) -> int:
    """Send ``request`` and return the status of the answer (0: none came)."""
    reader, writer = await asyncio.open_connection(host, port)
    headers = {
        "Host": f"{host}:{port}",
        "Content-Type": "application/json",
        "Connection": "close",
        **request.extra_headers,
    }
    if request.key:
        headers["Authorization"] = f"Bearer {api_key}"
    if request.chunked:
        headers["Transfer-Encoding"] = "chunked"
    else:
        headers["Content-Length"] = str(len(request.body))
    head = f"POST {request.path} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"

    async def write() -> None:
        try:
            writer.write(head.encode())
            body = request.body
            if request.chunked:
                for i in range(0, len(body), 1 << 16):
                    part = body[i : i + (1 << 16)]
                    writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                    await writer.drain()
                writer.write(b"0\r\n\r\n")
            elif request.trickle_s is not None:
                for i in range(len(body)):
                    writer.write(body[i : i + 1])
                    await writer.drain()
                    await asyncio.sleep(request.trickle_s)
            else:
                writer.write(body)
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server answered and closed before taking the whole body

    sender = asyncio.create_task(write())
    try:
        line = await asyncio.wait_for(reader.readline(), timeout)
        parts = line.split()
        return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
    except (TimeoutError, ConnectionError, OSError):
        return 0
    finally:
        sender.cancel()
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass


async def hostile_client(
    host: str,
    port: int,
    requests: list[Hostile],
    api_key: str,
    keep_going: Callable[[], bool],
    rounds: int | None,
    timeout: float = 30.0,
) -> list[tuple[str, int, int, float]]:
    """Send the requests in turn, round after round, while ``keep_going()`` (and for at
    least one round, at most ``rounds``); returns (name, expected, status, seconds) each."""
    seen: list[tuple[str, int, int, float]] = []
    done = 0
    while (done == 0 or keep_going()) and (rounds is None or done < rounds):
        for request in requests:
            start = time.perf_counter()
            status = await send(host, port, request, api_key, timeout)
            seen.append((request.name, request.expect, status, time.perf_counter() - start))
        done += 1
    return seen


def summarise(seen: list[tuple[str, int, int, float]]) -> dict:
    """Per kind: count, statuses, max latency; overall: non-4xx count and max latency."""
    kinds: dict[str, dict] = {}
    for name, expect, status, seconds in seen:
        kind = kinds.setdefault(name, {"expected": expect, "statuses": {}, "max_s": 0.0, "n": 0})
        kind["statuses"][str(status)] = kind["statuses"].get(str(status), 0) + 1
        kind["max_s"] = round(max(kind["max_s"], seconds), 4)
        kind["n"] += 1
    return {
        "requests": len(seen),
        "not_4xx": sum(1 for _, _, s, _ in seen if not 400 <= s < 500),
        "unexpected_status": sum(1 for _, e, s, _ in seen if s != e),
        "max_latency_s": round(max((t for *_, t in seen), default=0.0), 4),
        "by_kind": kinds,
    }
