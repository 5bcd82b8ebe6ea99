"""The service's batching and back-pressure: concurrent requests share batches and get their
own answers, a full queue answers 429 with Retry-After, a slow request 504 while the server
recovers, and the micro-batcher keeps each failure and each kind of job to itself."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from serving.app import create_app
from serving.batcher import MicroBatcher
from serving.settings import ServeSettings
from tests.serving_support import client_for


@pytest.fixture(scope="module")
def client(engine, oracle_dirs):
    with client_for(engine, oracle_dirs) as c:
        yield c


async def _with_app(app, fn):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await fn(app, c)


def test_concurrent_requests_are_batched_and_correct(engine, oracle_dirs, client):
    prompts = [f"Story number {i} about the sea" for i in range(8)]
    expected = [
        client.post("/v1/query", json={"prompt": p, "questions": ["Who?"], "max_tokens": 4}).json()
        for p in prompts
    ]
    base, oracle = oracle_dirs
    settings = ServeSettings(target=str(base), oracle=str(oracle), batch_wait_ms=50)
    app = create_app(settings, engine=engine)

    async def run(app, c):
        bodies = [{"prompt": p, "questions": ["Who?"], "max_tokens": 4} for p in prompts]
        responses = await asyncio.gather(*(c.post("/v1/query", json=b) for b in bodies))
        return [r.json() for r in responses], app.state.service.batcher.max_batch_seen

    got, max_batch = asyncio.run(_with_app(app, run))
    assert max_batch > 1
    assert [g["answers"] for g in got] == [e["answers"] for e in expected]


def test_full_queue_gets_429_with_retry_after(engine, oracle_dirs):
    base, oracle = oracle_dirs
    app = create_app(ServeSettings(target=str(base), oracle=str(oracle), queue_depth=1), engine)

    def in_flight(text: str) -> float:
        line = next(x for x in text.splitlines() if x.startswith("oracle_in_flight_requests "))
        return float(line.split()[1])

    async def run(app, c):
        async with app.state.service.admit():  # one request in flight fills the queue
            busy = await c.post("/v1/query", json={"prompt": "hi", "questions": ["q"]})
            during = in_flight((await c.get("/metrics")).text)
        after = await c.post(
            "/v1/query", json={"prompt": "hi", "questions": ["q"], "max_tokens": 2}
        )
        return busy, after, during, in_flight((await c.get("/metrics")).text)

    busy, after, during, idle = asyncio.run(_with_app(app, run))
    assert (during, idle) == (1.0, 0.0)  # the gauge reads the admitted count when scraped
    assert busy.status_code == 429 and int(busy.headers["Retry-After"]) >= 1
    assert busy.json()["error"]["type"] == "overloaded"
    assert after.status_code == 200


def test_slow_request_gets_504_and_the_server_recovers(engine, oracle_dirs):
    base, oracle = oracle_dirs
    app = create_app(ServeSettings(target=str(base), oracle=str(oracle), timeout=1.0), engine)
    release = threading.Event()

    async def run(app, c):
        blocker = asyncio.create_task(app.state.service.call(lambda _e: release.wait(30)))
        await asyncio.sleep(0.05)
        slow = await c.post("/v1/query", json={"prompt": "hi", "questions": ["q"]})
        release.set()
        await blocker
        after = await c.post(
            "/v1/query", json={"prompt": "hi", "questions": ["q"], "max_tokens": 2}
        )
        return slow, after

    slow, after = asyncio.run(_with_app(app, run))
    assert slow.status_code == 504 and slow.json()["error"]["type"] == "timeout"
    assert after.status_code == 200


def test_batcher_attributes_a_failure_to_its_own_request():
    calls: list[list[int]] = []

    def run_batch(kind: str, items: list[int]) -> list[int]:
        calls.append(list(items))
        if any(i < 0 for i in items):
            raise ValueError(f"negative item in {items}")
        return [i * 10 for i in items]

    async def main():
        batcher = MicroBatcher(run_batch, batch_size=8, wait_s=0.05)
        batcher.start()
        try:
            return await asyncio.gather(
                *(batcher.submit("answer", i) for i in (1, -1, 2)), return_exceptions=True
            )
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert results[0] == 10 and results[2] == 20 and isinstance(results[1], ValueError)
    assert calls[0] == [1, -1, 2]  # one batch first, then one by one


def test_batcher_fills_each_batch_with_one_kind_and_no_job_passes_a_call():
    """Interleaved captures and answers go out as one batch per kind, each in order; a job
    queued behind a ``call`` does not run before it."""
    calls: list[tuple[str, list]] = []

    def run_batch(kind: str, items: list) -> list:
        if kind == "call":
            calls.append((kind, ["call"]))
            return [items[0](None)]
        calls.append((kind, list(items)))
        return [f"{kind}:{i}" for i in items]

    async def main():
        batcher = MicroBatcher(run_batch, batch_size=4, wait_s=0.05)
        kinds = ["capture", "answer"] * 4
        first = [batcher.submit(k, i) for i, k in enumerate(kinds)]
        barrier = batcher.submit("call", lambda _engine: "done")
        after = [batcher.submit("capture", 100), batcher.submit("answer", 101)]
        batcher.start()  # everything is queued before the worker looks
        try:
            return await asyncio.gather(*first, barrier, *after)
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert results[:8] == [f"{k}:{i}" for i, k in enumerate(["capture", "answer"] * 4)]
    assert results[8:] == ["done", "capture:100", "answer:101"]
    assert calls == [
        ("capture", [0, 2, 4, 6]),
        ("answer", [1, 3, 5, 7]),
        ("call", ["call"]),
        ("capture", [100]),
        ("answer", [101]),
    ]
