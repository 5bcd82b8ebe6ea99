"""The API key: every route but the health check and the page needs it (as a bearer token or
``X-API-Key``), it is checked before a body is read, and it can come from a file or the
environment rather than the command line (where the process list shows it). The chat route's
OpenAI-style authentication error: test_chat_completions.py."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from oracle.errors import OracleInputError
from serving.settings import ServeSettings
from tests.serving_support import client_for


def test_api_key_guards_all_but_health(engine, oracle_dirs):
    with client_for(engine, oracle_dirs, api_key="s3cret") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200  # the page itself; its calls need the key
        for path in ("/v1/models", "/metrics", "/openapi.json"):
            assert c.get(path).status_code == 401
        r = c.post("/v1/query", json={"prompt": "hi", "questions": ["q"]})
        assert r.status_code == 401 and "API key" in r.json()["error"]["message"]
        assert c.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/v1/models", headers={"X-API-Key": "s3cret"}).status_code == 200
        spec = c.get("/openapi.json", headers={"X-API-Key": "s3cret"}).json()
        assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
        assert spec["paths"]["/health"]["get"]["security"] == []


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
