"""``POST /v1/generate`` and ``POST /v1/steer`` on a tiny oracle, through the real app."""

from __future__ import annotations

import time

import pytest
import torch
from fastapi.testclient import TestClient

from oracle.engines.hf import HFEngine
from oracle.oracle import ActivationOracle
from oracle.steering.generate import generate
from serving.app import create_app
from serving.settings import ServeSettings
from serving.tensors import encode_tensor
from tests.helpers import make_oracle_dir

PROMPTS = ["Hello there", "How are you today?"]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    _, oracle_dir = make_oracle_dir(tmp_path_factory.mktemp("http"), "llama", read_layers=(2,))
    ao = ActivationOracle.load(oracle=str(oracle_dir), device="cpu", dtype="float32")
    # one steering job queued or running at once: a second gets 429 (test_steer_as_a_job)
    app = create_app(ServeSettings(oracle=str(oracle_dir), max_jobs=1), engine=HFEngine(ao))
    with TestClient(app) as client:
        yield client, ao


def test_generate_matches_the_library_with_and_without_steering(served):
    client, ao = served
    vector = torch.randn(ao.d_model, generator=torch.Generator().manual_seed(0)) * 5
    plain = client.post("/v1/generate", json={"prompts": PROMPTS, "max_tokens": 6})
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"replies": generate(ao, PROMPTS, max_new_tokens=6), "steered": False}
    expected = generate(ao, PROMPTS, vector, 1, 2.0, max_new_tokens=6)
    for encoded in (vector.tolist(), encode_tensor(vector).model_dump()):
        body = {"prompts": PROMPTS, "max_tokens": 6, "steering": {"vector": encoded, "layer": 1}}
        body["steering"]["scale"] = 2.0
        steered = client.post("/v1/generate", json=body)
        assert steered.status_code == 200, steered.text
        assert steered.json()["replies"] == expected and steered.json()["steered"]
    body["steering"]["apply"] = "reply"
    reply_only = client.post("/v1/generate", json=body)
    assert reply_only.status_code == 200, reply_only.text
    assert reply_only.json()["replies"] == generate(
        ao, PROMPTS, vector, 1, 2.0, max_new_tokens=6, apply="reply"
    )
    body["steering"]["apply"] = "first"
    first_only = client.post("/v1/generate", json=body)
    assert first_only.status_code == 200, first_only.text
    assert first_only.json()["replies"] == generate(
        ao, PROMPTS, vector, 1, 2.0, max_new_tokens=6, apply="first"
    )


@pytest.mark.parametrize(
    ("body", "status", "match"),
    [
        ({"prompts": []}, 422, "prompts"),
        ({"prompts": ["  "]}, 422, "prompt 0 is empty"),
        ({"prompts": ["Hi"], "steering": {"vector": [0.0] * 5, "layer": 1}}, 400, "d_model"),
        ({"prompts": ["Hi"], "steering": {"vector": [0.0] * 64, "layer": 9}}, 400, "range"),
        ({"prompts": ["Hi"], "max_tokens": 100000}, 400, "limit"),
        ({"prompts": ["word " * 600]}, 400, "tokens, more than the server's limit"),
    ],
)
def test_generate_bad_input_is_a_clear_4xx(served, body, status, match):
    client, _ = served
    response = client.post("/v1/generate", json=body)
    assert response.status_code == status, response.text
    assert match in response.json()["error"]["message"]


def test_generate_rejects_a_non_finite_scale(served):
    client, _ = served
    # JSON has no NaN; Python's encoder writes it, and the server must still answer 4xx
    raw = '{"prompts": ["Hi"], "steering": {"vector": [0.0], "layer": 1, "scale": NaN}}'
    response = client.post(
        "/v1/generate", content=raw, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text


def test_generate_with_a_tiny_temperature_is_greedy_not_a_500(served):
    """The fuzzer's find: a temperature of 2e-266 overflowed sampling (a 500)."""
    client, _ = served
    body = {"prompts": ["Hello there"], "max_tokens": 3}
    greedy = client.post("/v1/generate", json=body)
    tiny = client.post("/v1/generate", json=body | {"temperature": 2e-266, "seed": 1})
    assert tiny.status_code == 200, tiny.text
    assert tiny.json()["replies"] == greedy.json()["replies"]


def test_steer_returns_a_vector_and_leaves_the_model_frozen(served):
    client, ao = served
    # choose: false: the vector as optimised (test_scale_choice.py has the chosen use)
    body = {"prompts": PROMPTS, "question": "What persona?", "answer": "A pirate.", "steps": 4}
    body["choose"] = False
    response = client.post("/v1/steer", json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["layer"] == 1 and out["read_layer"] == 2 and len(out["answer_nll"]) == 4
    assert out["vector"]["shape"] == [ao.d_model] and out["norm"] > 0
    assert all(not p.requires_grad and p.grad is None for p in ao.target.parameters())
    # the oracle reads the target's reply by default; reading the prompt finds another vector
    prompt_read = client.post("/v1/steer", json={**body, "read": "prompt"})
    assert prompt_read.status_code == 200, prompt_read.text
    assert prompt_read.json()["vector"]["data"] != out["vector"]["data"]
    assert out["apply"] == "reply"  # the default recipe: the vector on the reply alone
    reply_only = client.post("/v1/steer", json={**body, "apply": "reply"})
    assert reply_only.status_code == 200, reply_only.text
    assert reply_only.json()["apply"] == "reply"
    assert reply_only.json()["vector"]["data"] == out["vector"]["data"]  # the default, spelt out
    everywhere = client.post("/v1/steer", json={**body, "apply": "all"})
    assert everywhere.status_code == 200, everywhere.text
    assert everywhere.json()["apply"] == "all"
    assert everywhere.json()["vector"]["data"] != out["vector"]["data"]
    first_only = client.post("/v1/steer", json={**body, "apply": "first"})
    assert first_only.status_code == 200, first_only.text
    assert first_only.json()["apply"] == "first"
    assert first_only.json()["vector"]["data"] != reply_only.json()["vector"]["data"]


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_steer_as_a_job(served):
    client, _ = served
    body = {"prompts": PROMPTS, "question": "What persona?", "answer": "A pirate."}
    body["choose"] = False
    response = client.post("/v1/steer", json={**body, "steps": 22})  # > MAX_SYNC_STEPS: a job
    assert response.status_code == 202, response.text
    job_id = response.json()["job_id"]
    second = client.post("/v1/steer", json={**body, "steps": 2, "background": True})
    assert second.status_code == 429, second.text
    # a query still gets answered while the job runs (the job yields between chunks)
    assert client.post("/v1/generate", json={"prompts": ["Hi"], "max_tokens": 2}).status_code == 200
    deadline = time.time() + 60
    while True:
        job = client.get(f"/v1/steer/{job_id}").json()
        if job["status"] in ("done", "failed") or time.time() > deadline:
            break
        time.sleep(0.1)
    assert job["status"] == "done", job
    assert len(job["result"]["losses"]) == 22 and job["steps_done"] == 22
    assert client.get("/v1/steer/nope").status_code == 404


@pytest.mark.parametrize(
    ("extra", "status", "match"),
    [
        ({"answer": ""}, 422, "answer"),
        ({"layer": 2}, 400, "below the read layer"),
        ({"read_layer": 0}, 400, "no block comes before"),
        ({"steps": 100000}, 422, "steps"),
        ({"prompts": [" "]}, 422, "prompt 0 is empty"),
        ({"read": "both"}, 422, "read"),
        ({"reply_tokens": 0}, 422, "reply_tokens"),
        ({"apply": "reply", "read": "prompt"}, 422, "apply 'reply' needs read 'reply'"),
        ({"apply": "first", "read": "prompt"}, 422, "apply 'first' needs read 'reply'"),
        ({"apply": "prompt"}, 422, "apply"),
    ],
)
def test_steer_bad_input_is_a_clear_4xx(served, extra, status, match):
    client, _ = served
    body = {"prompts": PROMPTS, "question": "What persona?", "answer": "A pirate.", **extra}
    response = client.post("/v1/steer", json=body)
    assert response.status_code == status, response.text
    assert match in response.json()["error"]["message"]
