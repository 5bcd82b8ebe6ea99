"""The HTTP API against a tiny oracle (hf engine): contract, ground truth, errors, limits and
metrics (batching, overload and timeouts: ``test_batching.py``)."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from oracle.engines import AnswerRequest, CaptureRequest
from oracle.inputs import TargetInput
from serving.app import include_routers
from tests.helpers import MESSAGES
from tests.serving_support import client_for

QUESTIONS = ["What persona is the assistant playing?", "Is the assistant a pirate?"]


@pytest.fixture(scope="module")
def client(engine, oracle_dirs):
    with client_for(engine, oracle_dirs) as c:
        yield c


def test_health_models_and_openapi(client, engine):
    assert client.get("/health").json() == {"status": "ok", "engine": "hf"}
    models = client.get("/v1/models").json()
    roles = {m["role"]: m for m in models["data"]}
    assert roles["oracle"]["id"] == "oracle"
    assert roles["oracle"]["config"]["injection_site"] == engine.config.injection_site
    assert models["d_model"] == engine.d_model and models["n_layers"] == engine.n_layers
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/health", "/v1/models", "/metrics", "/v1/query", "/v1/activations", "/v1/oracle"):
        assert path in paths


def test_query_equals_the_engine_in_question_order(client, engine):
    body = {"messages": MESSAGES, "questions": QUESTIONS, "max_tokens": 6, "temperature": 0.0}
    r = client.post("/v1/query", json=body)
    assert r.status_code == 200, r.text
    data = r.json()
    cap, answers = engine.query(TargetInput(messages=MESSAGES), QUESTIONS, max_new_tokens=6)
    assert [a["question"] for a in data["answers"]] == QUESTIONS
    assert [a["answer"] for a in data["answers"]] == [a.text for a in answers]
    # default read: every token outside the system prompt, at the oracle's layer
    assert data["layer"] == engine.config.default_layer
    assert data["positions"] == cap.positions
    assert data["tokens_read"] == cap.read_tokens
    assert "pirate" not in "".join(data["tokens_read"]).replace("Ġ", " ")
    usage = data["usage"]
    assert usage["target_tokens"] == len(cap.token_ids)
    assert usage["prompt_tokens"] == 2 * len(cap.positions)
    assert usage["total_tokens"] == sum(v for k, v in usage.items() if k != "total_tokens")


def test_query_with_prompt_layer_and_positions(client, engine):
    body = {"prompt": "The quick brown fox", "questions": ["Animal?"], "layer": 2}
    body |= {"positions": "last:3", "max_tokens": 4}
    data = client.post("/v1/query", json=body).json()
    assert data["layer"] == 2 and len(data["positions"]) == 3
    cap = engine.capture([CaptureRequest(TargetInput(prompt=body["prompt"]), [2], "last:3")])[0]
    [expected] = engine.answer([AnswerRequest(cap.activations[0], "Animal?", 2, 4)])
    assert data["answers"][0]["answer"] == expected.text


def decode(encoded: dict) -> torch.Tensor:
    dtype = {"float32": "<f4", "float16": "<f2"}[encoded["dtype"]]
    raw = np.frombuffer(base64.b64decode(encoded["data"]), dtype=dtype)
    return torch.from_numpy(raw.astype(np.float32).reshape(encoded["shape"]))


def test_activations_round_trip_into_oracle(client, engine):
    r = client.post("/v1/activations", json={"messages": MESSAGES, "layers": [1, 3]})
    assert r.status_code == 200, r.text
    data = r.json()
    acts = decode(data["activations"])
    cap = engine.capture([CaptureRequest(TargetInput(messages=MESSAGES), [1, 3])])[0]
    assert data["layers"] == [1, 3] and acts.shape == cap.activations.shape
    torch.testing.assert_close(acts, cap.activations, rtol=0, atol=0)
    half = client.post("/v1/activations", json={"messages": MESSAGES, "dtype": "float16"}).json()
    assert half["activations"]["dtype"] == "float16"
    torch.testing.assert_close(
        decode(half["activations"])[0], cap.activations[0], rtol=1e-3, atol=1e-2
    )
    # answering about the captured layer-1 activations equals /v1/query
    layer1 = data["activations"] | {"shape": [1, *acts.shape[1:]]}
    layer1["data"] = base64.b64encode(acts[:1].numpy().astype("<f4").tobytes()).decode()
    body = {"activations": layer1, "layer": 1, "questions": QUESTIONS, "max_tokens": 6}
    via_oracle = client.post("/v1/oracle", json=body).json()
    via_query = client.post(
        "/v1/query", json={"messages": MESSAGES, "questions": QUESTIONS, "max_tokens": 6}
    ).json()
    assert [a["answer"] for a in via_oracle["answers"]] == [
        a["answer"] for a in via_query["answers"]
    ]


def test_yes_no_and_per_token_scores(client, engine):
    body = {"messages": MESSAGES, "questions": ["Is the assistant a pirate?"]}
    body |= {"yes_no": True, "per_token": True, "max_tokens": 2}
    data = client.post("/v1/query", json=body).json()
    cap = engine.capture([CaptureRequest(TargetInput(messages=MESSAGES))])[0]
    acts = cap.activations[0]
    [whole] = engine.answer([AnswerRequest(acts, body["questions"][0], 1, 2, yes_no=True)])
    assert data["answers"][0]["p_yes"] == pytest.approx(whole.p_yes, abs=1e-5)
    scores = data["token_scores"]
    assert [s["position"] for s in scores] == cap.positions
    for i in (0, len(scores) - 1):
        [alone] = engine.answer(
            [AnswerRequest(acts[i : i + 1], body["questions"][0], 1, 1, yes_no=True)]
        )
        assert scores[i]["p_yes"] == pytest.approx(alone.p_yes, abs=1e-5)
        assert scores[i]["token"] == cap.tokens[cap.positions[i]]


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(array.astype("<f4").tobytes()).decode()


def _acts(n: int, d: int, fill: float | None = None) -> dict:
    array = (
        np.random.default_rng(0).standard_normal((n, d)) if fill is None else np.full((n, d), fill)
    )
    return {"data": _b64(array), "shape": [n, d]}


BAD = [
    ("/v1/oracle", {"activations": _acts(2, 32), "questions": ["q"]}, 400, "hidden size 32"),
    (
        "/v1/oracle",
        {"activations": _acts(2, 64, float("nan")), "questions": ["q"]},
        400,
        "NaN or inf",
    ),
    (
        "/v1/oracle",
        {"activations": _acts(2, 64, float("inf")), "questions": ["q"]},
        400,
        "NaN or inf",
    ),
    (
        "/v1/oracle",
        {"activations": {"data": "%%%", "shape": [1, 64]}, "questions": ["q"]},
        400,
        "base64",
    ),
    (
        "/v1/oracle",
        {"activations": {"data": _b64(np.zeros(10)), "shape": [1, 64]}, "questions": ["q"]},
        400,
        "bytes",
    ),
    ("/v1/oracle", {"activations": _acts(2, 64), "questions": ["q"], "layer": 9}, 400, "layer 9"),
    (
        "/v1/oracle",
        {"activations": _acts(2, 64), "questions": ["q"], "max_tokens": 10_000},
        400,
        "max_tokens",
    ),
    ("/v1/query", {"messages": MESSAGES, "questions": ["q"], "layer": -9}, 400, "layer -9"),
    (
        "/v1/query",
        {"messages": MESSAGES, "questions": ["q"], "positions": "indices:999"},
        400,
        "position 999",
    ),
    (
        "/v1/query",
        {"messages": MESSAGES, "questions": ["q"], "positions": "sideways"},
        422,
        "positions",
    ),
    ("/v1/query", {"prompt": "word " * 600, "questions": ["q"]}, 400, "limit of 512"),
    (
        "/v1/query",
        {"messages": MESSAGES, "questions": ["  "]},
        422,
        "questions: question 0 is empty",
    ),
    ("/v1/query", {"messages": MESSAGES, "questions": []}, 422, "questions"),
    ("/v1/query", {"questions": ["q"]}, 422, "exactly one of 'messages' or 'prompt'"),
    (
        "/v1/query",
        {"messages": [{"role": "robot", "content": "x"}], "questions": ["q"]},
        422,
        "messages[0].role",
    ),
    (
        "/v1/query",
        {"messages": MESSAGES, "questions": ["q"], "temperature": -1},
        422,
        "temperature",
    ),
    (
        "/v1/query",
        {"messages": MESSAGES, "questions": ["q"], "model": "nope"},
        404,
        "unknown model 'nope'",
    ),
    (
        "/v1/query",
        {"messages": MESSAGES, "questions": ["q"], "per_token": True},
        400,
        "per_token needs yes_no",
    ),
    ("/v1/activations", {"prompt": "hi", "layers": [99]}, 400, "layer 99"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "needle"), BAD, ids=[f"{i}" for i in range(len(BAD))]
)
def test_bad_input_gets_a_named_4xx(client, path, body, status, needle):
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert needle in error["message"] and error["type"]
    assert client.get("/health").status_code == 200


def test_malformed_json_and_wrong_method(client):
    r = client.post("/v1/query", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    assert client.get("/v1/query").status_code == 405
    assert client.get("/nowhere").json()["error"]["type"] == "not_found"


def test_body_over_the_limit_gets_413(engine, oracle_dirs):
    with client_for(engine, oracle_dirs, max_body_bytes=1000) as c:
        r = c.post("/v1/query", json={"prompt": "x" * 2000, "questions": ["q"]})
        assert r.status_code == 413 and r.json()["error"]["type"] == "payload_too_large"

        def chunks():
            yield b'{"prompt": "'
            yield b"x" * 2000
            yield b'", "questions": ["q"]}'

        r = c.post("/v1/query", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413
        assert (
            c.post(
                "/v1/query", json={"prompt": "hi", "questions": ["q"], "max_tokens": 2}
            ).status_code
            == 200
        )


def test_metrics_count_requests(client):
    def counts() -> dict[str, float]:
        """Each request counter and latency count by its labels (the client is shared)."""
        found = {}
        for line in client.get("/metrics").text.splitlines():
            if line.startswith(("oracle_requests_total{", "oracle_request_seconds_count{")):
                key, value = line.rsplit(" ", 1)
                found[key] = float(value)
        return found

    before = counts()
    client.post("/v1/query", json={"prompt": "hi", "questions": ["q"], "max_tokens": 2})
    assert client.post("/v1/query", json={"prompt": "hi", "questions": [" "]}).status_code == 422
    assert client.get("/no/such/route").status_code == 404
    after = counts()

    def added(key: str) -> float:
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert added('oracle_requests_total{route="/v1/query",status="200"}') == 1
    assert added('oracle_requests_total{route="/v1/query",status="422"}') == 1
    assert added('oracle_requests_total{route="unmatched",status="404"}') == 1
    assert added('oracle_request_seconds_count{route="/v1/query"}') == 2
    text = client.get("/metrics").text
    assert "oracle_batch_size_bucket" in text and "oracle_in_flight_requests" in text


def test_missing_router_module_is_skipped():
    from fastapi import FastAPI

    included = include_routers(FastAPI(), ("serving.routers.health", "serving.routers.no_such"))
    assert included == ["serving.routers.health"]


def test_tiny_temperature_is_greedy_not_a_500(client):
    body = {"prompt": "The sea is calm", "questions": ["Who?"], "max_tokens": 4}
    greedy = client.post("/v1/query", json=body).json()["answers"]
    tiny = client.post("/v1/query", json=body | {"temperature": 1e-300, "seed": 1})
    assert tiny.status_code == 200 and tiny.json()["answers"] == greedy
