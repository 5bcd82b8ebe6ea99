"""Schema-driven fuzzing (schemathesis) of every operation in the OpenAPI spec: no 5xx, ever,
and the server still answers /health afterwards."""

from __future__ import annotations

import os
from collections import Counter

import pytest

from oracle.engines.hf import HFEngine
from serving.app import create_app
from serving.settings import ServeSettings
from tests.helpers import make_oracle_dir
from tests.serving_support import serve_in_thread

EXAMPLES_PER_OPERATION = int(os.environ.get("ORACLE_FUZZ_EXAMPLES", "25"))
ONLY = os.environ.get("ORACLE_FUZZ_ONLY")  # a path prefix, to fuzz one area while debugging


def fuzz_operation(operation, url: str, failures: list[str], statuses: Counter) -> None:
    """Send hypothesis-generated requests for one operation; record every 5xx."""
    from hypothesis import HealthCheck, given, settings

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy())
    def fuzz(case) -> None:
        response = case.call(base_url=url, timeout=60)
        statuses[(operation.path, response.status_code // 100)] += 1
        if response.status_code >= 500:
            failures.append(
                f"{operation.method.upper()} {operation.path} -> "
                f"{response.status_code}: {response.text[:300]} for {case.body!r:.300}"
            )

    fuzz()


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_fuzzed_requests_never_get_a_5xx(tmp_path):
    schemathesis = pytest.importorskip("schemathesis")
    import httpx

    base, oracle = make_oracle_dir(tmp_path, "llama")
    engine = HFEngine.load(str(base), str(oracle), dtype="float32", device="cpu")
    # small limits keep each fuzzed request cheap on CPU; they are limits, not bypasses
    serve = ServeSettings(
        target=str(base), oracle=str(oracle), max_tokens=64, max_new_tokens=4, max_heat_tokens=4
    )
    app = create_app(serve, engine=engine)
    failures: list[str] = []
    statuses: Counter = Counter()
    with serve_in_thread(app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert {op.path for op in operations} >= {"/v1/query", "/v1/activations", "/v1/oracle"}
        for operation in operations:
            if ONLY and not operation.path.startswith(ONLY):
                continue
            fuzz_operation(operation, url, failures, statuses)
        assert httpx.get(f"{url}/health").status_code == 200
    assert not failures, "\n".join(failures[:10])
    if not ONLY:
        # the schema states the limits, so some fuzzed queries are valid and reach the engine
        assert statuses[("/v1/query", 2)] > 0, dict(statuses)
