"""A real ``oracle serve`` process on a free port: ready when /health answers, then queried;
on SIGTERM it closes its engine (for vLLM, its engine processes) before it exits."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from tests.helpers import MESSAGES, make_oracle_dir
from tests.serving_support import free_port


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_oracle_serve_process_answers_queries(tmp_path):
    base, oracle = make_oracle_dir(tmp_path, "llama")
    port = free_port()
    marker = tmp_path / "closed.txt"
    env = dict(os.environ, OMP_NUM_THREADS="1", ORACLE_API_KEY="k3y", CLOSED_MARKER=str(marker))
    # The engine's close() leaves a mark: uvicorn re-raises SIGTERM after its shutdown, so a
    # close placed after uvicorn.run never ran (and vLLM's processes outlived the server).
    code = (
        "import os, oracle.engines.hf as hf\n"
        "def close(self):\n"
        "    open(os.environ['CLOSED_MARKER'], 'a').write('closed\\n')\n"
        "hf.HFEngine.close = close\n"
        "from oracle_cli import main; main()"
    )
    cmd = [sys.executable, "-c", code, "serve"]
    cmd += ["--target", str(base), "--oracle", str(oracle), "--port", str(port)]
    cmd += ["--log-level", "warning"]
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.time() < deadline, "oracle serve did not become healthy"
            time.sleep(0.2)
        body = {"messages": MESSAGES, "questions": ["Who?", "Why?"], "max_tokens": 4}
        assert httpx.post(f"{url}/v1/query", json=body, timeout=60).status_code == 401
        r = httpx.post(f"{url}/v1/query", json=body, headers={"X-API-Key": "k3y"}, timeout=60)
        assert r.status_code == 200, r.text
        data = r.json()
        assert [a["question"] for a in data["answers"]] == ["Who?", "Why?"]
        assert all(isinstance(a["answer"], str) for a in data["answers"])
        assert data["positions"] and len(data["tokens_read"]) == len(data["positions"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    assert proc.returncode is not None
    assert marker.exists() and "closed" in marker.read_text(), "the engine was not closed"
