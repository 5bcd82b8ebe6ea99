"""The last holes of the service's review (issue 18), each pinned: non-finite outputs, the key
checked first and kept out of the process list, paths in messages, shard paths confined to
the log, job attempts and cancellation, steering jobs that survive a restart."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from oracle.engines.hf import HFEngine
from serving.app import create_app
from serving.settings import ServeSettings
from tests.helpers import make_oracle_dir


@pytest.fixture(scope="module")
def oracle_dirs(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("holes"), "llama", read_layers=(2,))


@pytest.fixture(scope="module")
def engine(oracle_dirs):
    base, oracle = oracle_dirs
    return HFEngine.load(str(base), str(oracle), dtype="float32", device="cpu")


def client_for(engine, oracle_dirs, **overrides) -> TestClient:
    base, oracle = oracle_dirs
    settings = ServeSettings(target=str(base), oracle=str(oracle), **overrides)
    return TestClient(create_app(settings, engine=engine))


@pytest.mark.parametrize("temperature", [1.0, 0.0])
def test_a_huge_finite_steering_vector_is_a_400_not_a_500(engine, oracle_dirs, temperature):
    """Sampling from the overflowed logits raised inside torch (a 500); greedy answered
    garbage. Both are a 400 naming the cause now."""
    body = {
        "prompts": ["Hello there"],
        "max_tokens": 3,
        "temperature": temperature,
        "seed": 0,
        "steering": {"vector": [3e38] * engine.d_model, "layer": 1, "scale": 1e3},
    }
    with client_for(engine, oracle_dirs) as client:
        r = client.post("/v1/generate", json=body)
        assert r.status_code == 400, r.text
        assert "not finite" in r.json()["error"]["message"]
        body["steering"]["scale"] = 1.0
        body["steering"]["vector"] = [0.5] * engine.d_model
        assert client.post("/v1/generate", json=body).status_code == 200
