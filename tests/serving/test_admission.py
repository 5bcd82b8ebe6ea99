"""Admission by cost (issue 18): the limits of every route, checked before any work; tokenising
off the event loop and off the engine's thread, its length checked before any position is
chosen; a lane per kind of work (429 when full); failed batches halved, not rerun one by one."""

from __future__ import annotations

import asyncio
import random
import threading

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

import oracle.capture
from audit.synthetic import write_synthetic_log
from serving.app import create_app
from serving.batcher import MicroBatcher
from serving.settings import ServeSettings
from tests.helpers import MESSAGES


def app_for(engine, oracle_dirs, **overrides):
    base, oracle = oracle_dirs
    return create_app(ServeSettings(target=str(base), oracle=str(oracle), **overrides), engine)


async def with_app(app, fn):
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await fn(app, c)


class Spy:
    """Wraps a function of a module, recording the thread of each call."""

    def __init__(self, monkeypatch, module, name: str) -> None:
        self.threads: list[str] = []
        original = getattr(module, name)

        def spy(*args, **kwargs):
            self.threads.append(threading.current_thread().name)
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, spy)


def test_an_oversized_input_is_refused_before_positions_are_chosen(
    engine, oracle_dirs, monkeypatch
):
    """The review's finding: a huge role-selected chat got its 400 only after tokenising and
    choosing positions on the engine's thread. Now: tokenised on the preparation thread, the
    length checked first, no position chosen, and nothing for the engine's thread."""
    tokenized = Spy(monkeypatch, oracle.capture, "tokenize_input")
    selected = Spy(monkeypatch, oracle.capture, "select_positions")
    messages = [{"role": "user", "content": "word " * 150}] * 4  # ~600 tokens, 3000 chars
    body = {"messages": messages, "questions": ["q"], "positions": "role:user"}
    with TestClient(app_for(engine, oracle_dirs)) as client:
        calls_before = client.app.state.service.batcher.engine_calls
        r = client.post("/v1/query", json=body)
        assert r.status_code == 400, r.text
        assert "more than the limit of 512" in r.json()["error"]["message"]
        assert tokenized.threads and all(t.startswith("prep") for t in tokenized.threads)
        assert selected.threads == []
        assert client.app.state.service.batcher.engine_calls == calls_before
        # an ordinary query is prepared on that thread too, and answered
        ok = client.post("/v1/query", json={"messages": MESSAGES, "questions": ["q"]})
        assert ok.status_code == 200, ok.text
        assert selected.threads and all(t.startswith("prep") for t in selected.threads)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/query", {"messages": [{"role": "user", "content": "x" * 9000}] * 2}),
        ("/v1/query", {"prompt": "y" * 17_000}),
        ("/v1/activations", {"prompt": "y" * 17_000}),
        ("/v1/generate", {"prompts": ["z" * 9000, "z" * 9000]}),
    ],
    ids=["query-messages", "query-prompt", "activations", "generate"],
)
def test_text_beyond_the_character_cap_is_refused_untokenised(
    engine, oracle_dirs, monkeypatch, path, body
):
    """32 characters per token of --max-tokens by default (16,384 here), over every text field
    of the request together: a long text is never tokenised."""
    tokenized = Spy(monkeypatch, oracle.capture, "tokenize_input")
    if path == "/v1/query":
        body = {**body, "questions": ["q"]}
    with TestClient(app_for(engine, oracle_dirs)) as client:
        r = client.post(path, json=body)
    assert r.status_code == 400, r.text
    assert "--max-chars" in r.json()["error"]["message"]
    assert tokenized.threads == []


def _acts(n: int, d: int) -> dict:
    array = np.random.default_rng(0).standard_normal((n, d)).astype("<f4")
    import base64

    return {"data": base64.b64encode(array.tobytes()).decode(), "shape": [n, d]}


def test_every_route_applies_the_question_limit(engine, oracle_dirs, tmp_path):
    """/v1/oracle answered 64 questions under --max-questions 16; /v1/audit took any number."""
    write_synthetic_log(tmp_path / "logs", 2, d_model=engine.d_model, n_positions=3)
    questions = [f"Question {i}?" for i in range(17)]
    app = app_for(engine, oracle_dirs, audit_root=str(tmp_path))
    with TestClient(app) as client:
        for path, body in (
            ("/v1/oracle", {"activations": _acts(2, engine.d_model)}),
            ("/v1/query", {"messages": MESSAGES}),
            ("/v1/audit", {"logs": "logs"}),
        ):
            r = client.post(path, json={**body, "questions": questions})
            assert r.status_code == 400, (path, r.text)
            assert "limit of 16 (--max-questions)" in r.json()["error"]["message"]
        r = client.post("/v1/oracle", json={"activations": _acts(2, 64), "questions": ["q"] * 16})
        assert r.status_code == 200, r.text


def test_audit_requests_have_the_servers_limits(engine, oracle_dirs, tmp_path):
    write_synthetic_log(tmp_path / "logs", 2, d_model=engine.d_model, n_positions=3)
    app = app_for(engine, oracle_dirs, audit_root=str(tmp_path), batch_size=8)
    with TestClient(app) as client:
        for extra, needle in (
            ({"batch_size": 9}, "limit of 8 (--batch-size)"),
            ({"max_tokens": 129}, "limit of 128 (--max-new-tokens)"),
        ):
            r = client.post("/v1/audit", json={"logs": "logs", "questions": ["q"], **extra})
            assert r.status_code == 400, r.text
            assert needle in r.json()["error"]["message"]


def test_audit_records_beyond_the_token_limit_become_error_rows(engine, oracle_dirs, tmp_path):
    """A record of any length went to the engine whole; now it is refused before it."""
    write_synthetic_log(tmp_path / "logs", 3, d_model=engine.d_model, n_positions=6)
    write_synthetic_log(tmp_path / "short", 2, d_model=engine.d_model, n_positions=4)
    app = app_for(engine, oracle_dirs, audit_root=str(tmp_path), max_tokens=5)
    with TestClient(app) as client:
        seen: list[int] = []
        service = client.app.state.service
        answer = service.engine.answer

        def spy(requests):
            seen.extend(r.activations.shape[0] for r in requests)
            return answer(requests)

        service.engine.answer = spy
        try:
            for logs in ("logs", "short"):
                job = client.post("/v1/audit", json={"logs": logs, "questions": ["Who?"]}).json()
                body = wait_for(client, job["id"])
                assert body["status"] == "done", body
                errors = [row["error"] for row in body["results"]]
                if logs == "logs":
                    assert len(errors) == 3
                    assert all(
                        "6 positions, more than the server's limit of 5" in e for e in errors
                    )
                else:
                    assert errors == [None, None]
        finally:
            service.engine.answer = answer
    assert seen and all(n <= 5 for n in seen)


def wait_for(client, job_id: str, timeout: float = 120) -> dict:
    import time

    deadline = time.time() + timeout
    while True:
        body = client.get(f"/v1/audit/{job_id}", params={"limit": 1000}).json()
        if body["status"] in ("done", "failed", "cancelled"):
            return body
        assert time.time() < deadline, body
        time.sleep(0.05)


def test_each_kind_of_work_has_a_full_lane_answered_429(engine, oracle_dirs, tmp_path):
    """Queries (--queue-depth) and each long kind (--max-jobs, queued and running) have
    their own cap: a full lane answers 429 with Retry-After, and the others still admit."""
    write_synthetic_log(tmp_path / "logs", 2, d_model=engine.d_model, n_positions=3)
    app = app_for(
        engine, oracle_dirs, audit_root=str(tmp_path), max_jobs=1, queue_depth=1, timeout=30
    )
    release = threading.Event()

    async def run(app, c):
        service = app.state.service
        blocker = asyncio.create_task(service.call(lambda _e: release.wait(30)))
        await asyncio.sleep(0.05)
        generate = {"prompts": ["Hello"], "max_tokens": 2}
        first_gen = asyncio.create_task(c.post("/v1/generate", json=generate))
        audit_body = {"logs": "logs", "questions": ["q"], "max_tokens": 2}
        first_audit = await c.post("/v1/audit", json=audit_body)
        query = {"prompt": "hi", "questions": ["q"], "max_tokens": 2}
        first_query = asyncio.create_task(c.post("/v1/query", json=query))
        await asyncio.sleep(0.2)
        second_gen = await c.post("/v1/generate", json=generate)
        second_audit = await c.post("/v1/audit", json=audit_body)
        second_query = await c.post("/v1/query", json=query)
        release.set()
        await blocker
        done = [await first_gen, await first_query]
        return first_audit, second_gen, second_audit, second_query, done

    first_audit, *busy, done = asyncio.run(with_app(app, run))
    assert first_audit.status_code == 202, first_audit.text
    for r in busy:
        assert r.status_code == 429, r.text
        assert int(r.headers["Retry-After"]) >= 1 and r.json()["error"]["type"] == "overloaded"
    assert [r.status_code for r in done] == [200, 200]


def test_a_failed_batch_is_halved_not_rerun_one_by_one():
    """One bad item in a batch of 16: found in O(log n) engine calls, the good items answered
    in halves (before: 1 + 16 calls, each good item run alone again)."""
    calls: list[list[int]] = []

    def run_batch(kind: str, items: list[int]) -> list[int]:
        calls.append(list(items))
        if any(i < 0 for i in items):
            raise ValueError(f"negative item in {items}")
        return [i * 10 for i in items]

    items = list(range(1, 17))
    items[11] = -1

    async def main():
        batcher = MicroBatcher(run_batch, batch_size=16, wait_s=0.05)
        submitted = [batcher.submit("answer", i) for i in items]
        batcher.start()
        try:
            return await asyncio.gather(*submitted, return_exceptions=True)
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert isinstance(results[11], ValueError)
    assert [r for k, r in enumerate(results) if k != 11] == [
        i * 10 for k, i in enumerate(items) if k != 11
    ]
    assert calls[0] == items and len(calls) <= 1 + 2 * 4
    assert sum(len(c) == 1 for c in calls) <= 2


def test_queries_run_between_the_steps_of_long_work():
    """Long work queued on the long lane yields to a query after the step in progress."""
    order: list[str] = []
    started = threading.Event()

    def run_batch(kind: str, items: list) -> list:
        if kind == "call":
            started.set()
            return [items[0](None)]
        order.append(f"{kind}:{items}")
        return items

    def step(i: int):
        def fn(_engine):
            threading.Event().wait(0.05)
            order.append(f"step{i}")
            return i

        return fn

    async def main():
        batcher = MicroBatcher(run_batch, batch_size=4, wait_s=0.0, long_share=0.25)
        batcher.start()
        try:
            steps = [
                asyncio.create_task(batcher.submit("call", step(i), lane="long")) for i in range(5)
            ]
            while not started.is_set():
                await asyncio.sleep(0.005)
            answer = await batcher.submit("answer", 7)
            return answer, await asyncio.gather(*steps)
        finally:
            await batcher.stop()

    answer, steps = asyncio.run(main())
    assert answer == 7 and steps == list(range(5))
    assert order.index("answer:[7]") <= 1, order  # after the step in progress, at most


def _brute_overlaps(offsets, spans):
    return [any(a < e and b > s for s, e in spans) for a, b in offsets]


def test_position_selection_equals_testing_every_span():
    """Choosing a role's tokens is O(n log s) now (it tested every span for every token);
    same answers on random offsets and spans, overlapping and zero-width ones included."""
    from oracle.positions import _overlapping

    rng = random.Random(0)
    for _ in range(2000):
        spans = []
        for _ in range(rng.randint(0, 6)):
            start = rng.randint(0, 30)
            spans.append((start, start + rng.randint(0, 8)))
        offsets = []
        for _ in range(rng.randint(0, 20)):
            start = rng.randint(0, 40)
            offsets.append((start, start + rng.randint(0, 4)))
        assert _overlapping(offsets, spans) == _brute_overlaps(offsets, spans)


def test_stop_returns_only_when_the_engine_call_in_progress_has_ended():
    """A server stopped during a steering step leaves the engine idle: the step in progress
    ends before stop returns (a second server on the same engine would otherwise run its
    steps while the first one's hooks are on the model)."""
    inside, ended = threading.Event(), threading.Event()

    def slow_step(_engine):
        inside.set()
        threading.Event().wait(0.3)
        ended.set()
        return 1

    def run_batch(kind, items):
        return [item(None) for item in items] if kind == "call" else list(items)

    async def main():
        batcher = MicroBatcher(run_batch, batch_size=1, wait_s=0.0)
        batcher.start()
        task = asyncio.create_task(batcher.submit("call", slow_step, lane="long"))
        while not inside.is_set():
            await asyncio.sleep(0.005)
        await batcher.stop()
        stopped_after_the_step = ended.is_set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return stopped_after_the_step

    assert asyncio.run(main())
