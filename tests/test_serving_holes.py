"""The last holes of the service's review (issue 18), each pinned: non-finite outputs, the key
checked first and kept out of the process list, paths in messages, shard paths confined to
the log, job attempts and cancellation, steering jobs that survive a restart."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from oracle.engines.hf import HFEngine
from oracle.errors import OracleInputError
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


def test_the_key_is_checked_before_the_body_is_read(engine, oracle_dirs):
    """A keyless 5 MB body was buffered up to the limit and answered 413: 401 now."""
    big = b'{"prompt": "' + b"x" * 5_000_000 + b'", "questions": ["q"]}'
    json_type = {"content-type": "application/json"}

    def chunks():
        for i in range(0, len(big), 1 << 20):
            yield big[i : i + (1 << 20)]

    with client_for(engine, oracle_dirs, api_key="s3cret") as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = client.post("/v1/query", content=big, headers={**json_type, **headers})
            assert r.status_code == 401, r.text
            r = client.post("/v1/query", content=chunks(), headers={**json_type, **headers})
            assert r.status_code == 401, r.text
        r = client.post("/v1/query", content=big, headers={**json_type, "X-API-Key": "s3cret"})
        assert r.status_code == 413


def test_the_key_from_a_file(engine, oracle_dirs, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("from-a-file\n")
    with client_for(engine, oracle_dirs, api_key_file=str(key_file)) as client:
        assert client.get("/v1/models").status_code == 401
        ok = client.get("/v1/models", headers={"Authorization": "Bearer from-a-file"})
        assert ok.status_code == 200
    for settings, needle in (
        (dict(api_key_file=str(tmp_path / "missing")), "cannot read"),
        (dict(api_key_file=str(tmp_path / "key"), api_key="two"), "once"),
    ):
        with pytest.raises(OracleInputError, match=needle):
            ServeSettings(**settings).validate()
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(OracleInputError, match="empty"):
        ServeSettings(api_key_file=str(tmp_path / "empty")).validate()


@pytest.mark.parametrize("how", ["env", "file"])
def test_oracle_serve_takes_the_key_off_the_command_line(
    engine, oracle_dirs, tmp_path, how, monkeypatch
):
    """`oracle serve` reads the key from ORACLE_API_KEY or --api-key-file (a key given as
    --api-key shows in the process list)."""
    import uvicorn

    import serving.service
    from oracle_cli import app, load_commands

    load_commands()
    served = {}
    monkeypatch.setattr(serving.service, "load_engine", lambda _settings: engine)
    monkeypatch.setattr(uvicorn, "run", lambda app_, **_kw: served.setdefault("app", app_))
    monkeypatch.setattr(engine, "close", lambda: None)  # the module's engine stays open
    base, oracle = oracle_dirs
    argv = ["serve", "--target", str(base), "--oracle", str(oracle)]
    env = {"ORACLE_API_KEY": "from-env"}
    if how == "file":
        (tmp_path / "key").write_text("from-env\n")
        argv += ["--api-key-file", str(tmp_path / "key")]
        env = {}
    result = CliRunner().invoke(app, argv, env=env)
    assert result.exit_code == 0, result.output
    with TestClient(served["app"]) as client:
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"X-API-Key": "from-env"}).status_code == 200


def test_audit_messages_name_paths_relative_to_the_root(engine, oracle_dirs, tmp_path):
    """Messages echoed absolute server paths: a missing log's 400 and a job's error rows
    (a reader's 'No such file or directory: /abs/...') name paths under the root only."""
    from audit.synthetic import write_synthetic_log
    from tests.test_audit_http import wait_for

    write_synthetic_log(tmp_path / "logs", 2, d_model=engine.d_model, n_positions=2)
    (tmp_path / "logs" / "shards" / "00000.safetensors").unlink()
    body = {"questions": ["Is the assistant a pirate?"], "max_tokens": 2}
    with client_for(engine, oracle_dirs, audit_root=str(tmp_path)) as client:
        r = client.post("/v1/audit", json={"logs": "nowhere", **body})
        assert r.status_code == 400 and str(tmp_path) not in r.text
        assert "'nowhere' is not a directory" in r.json()["error"]["message"]
        job = client.post("/v1/audit", json={"logs": "logs", **body}).json()
        done = wait_for(client, job["id"])
        errors = [row["error"] for row in done["results"]]
        assert len(errors) == 2 and all("logs/shards/00000.safetensors" in e for e in errors)
        assert str(tmp_path) not in json.dumps(done)


def test_a_slow_body_gets_408_after_the_body_timeout(engine, oracle_dirs):
    """--body-timeout was a setting that nothing read: a client trickling its body held its
    connection as long as it liked."""
    import socket
    import time

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
            sock.settimeout(0.05)
            reply = b""
            while b"\r\n\r\n" not in reply and time.perf_counter() - start < 5:
                try:
                    sock.sendall(b"x")  # a byte at a time, never the whole body
                    reply += sock.recv(4096)
                except TimeoutError:
                    continue
            elapsed = time.perf_counter() - start
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert 0.4 < elapsed < 2.0
