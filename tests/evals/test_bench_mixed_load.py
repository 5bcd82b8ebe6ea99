"""The mixed-load benchmark (scripts/bench/mixed_load.py) runs end to end at a tiny size: a real
server, both phases, the long work, every hostile request answered with its 4xx. Timings are
the lead's to measure on a quiet machine; this checks only what does not depend on them."""

from __future__ import annotations

import json

import pytest

from scripts.bench.mixed_load import main


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_mixed_load_benchmark_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "mixed.json"
    argv = ["--tiny", "--clients", "2", "--queries", "2", "--steer-steps", "3"]
    argv += ["--audit-records", "4", "--hostile-rounds", "1", "--threads", "1", "--out", str(out)]
    result = main(argv)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["server_errors_5xx"] == 0 and result["targets_met"]["no_5xx"]
    assert result["queries"]["idle"]["ok"] == 4 and result["queries"]["loaded"]["ok"] == 4
    hostile = result["hostile"]
    assert hostile["not_4xx"] == 0 and hostile["unexpected_status"] == 0, hostile
    assert len(hostile["by_kind"]) == hostile["requests"] == 11
    work = result["long_work"]
    assert work["steer_status"] in ("running", "done") and work["audit_status"] != "failed"
    assert result["memory"]["rss_loaded_end_bytes"] > 0
