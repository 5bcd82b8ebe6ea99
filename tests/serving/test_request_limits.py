"""Requests the service must refuse cleanly: a steering vector whose outputs overflow is a 400
naming the cause, not a 500; a client trickling its body gets a 408 after the body timeout
instead of holding a connection. (The API key: test_auth.py; body size: test_routes.py.)"""

from __future__ import annotations

import socket
import time

import pytest

from serving.app import create_app
from serving.settings import ServeSettings
from tests.serving_support import client_for

READ_LAYERS = (2,)  # the conftest's oracle reads block 2


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


def test_a_slow_body_gets_408_after_the_body_timeout(engine, oracle_dirs):
    """--body-timeout was a setting that nothing read: a client trickling its body held its
    connection as long as it liked. The 408 comes while the body is still incomplete (how
    soon after the timeout is a matter for a benchmark, not a test)."""
    from tests.serving_support import serve_in_thread

    base, oracle = oracle_dirs
    settings = ServeSettings(target=str(base), oracle=str(oracle), body_timeout=0.5)
    with serve_in_thread(create_app(settings, engine=engine)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            head = (
                "POST /v1/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n"
            )
            start = time.perf_counter()
            sock.sendall(head.encode() + b'{"prompt": "')
            sent = len(b'{"prompt": "')
            sock.settimeout(0.05)
            reply = b""
            # a byte every 50 ms would take 50 s to complete the body; give up after 30
            while b"\r\n\r\n" not in reply and time.perf_counter() - start < 30:
                try:
                    sock.sendall(b"x")  # a byte at a time, never the whole body
                    sent += 1
                    reply += sock.recv(4096)
                except TimeoutError:
                    continue
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert sent < 1000
