"""Support for the serving tests: a tiny oracle's engine, and a real server on a free port."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve_in_thread(app, timeout: float = 60.0) -> Iterator[str]:
    """Run ``app`` under uvicorn on 127.0.0.1 in a thread; yields the base URL."""
    import uvicorn

    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline or not thread.is_alive():
                raise RuntimeError("the server did not become healthy")
            time.sleep(0.1)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def client_for(engine, oracle_dirs, **overrides):
    """A TestClient of the app serving ``engine`` (the oracle in ``oracle_dirs``), with
    ``overrides`` of its :class:`ServeSettings` (an API key, limits, an audit root)."""
    from fastapi.testclient import TestClient

    from serving.app import create_app
    from serving.settings import ServeSettings

    base, oracle = oracle_dirs
    settings = ServeSettings(target=str(base), oracle=str(oracle), **overrides)
    return TestClient(create_app(settings, engine=engine))
