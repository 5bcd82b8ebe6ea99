"""The toy-world steering experiment runs end to end on a tiny oracle (pipeline check only)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evals.steering_toy import app, behaviour_passes
from tests.helpers import make_oracle_dir


def test_pass_rule():
    assert behaviour_passes(0.3, 0.0, 1.5)
    assert not behaviour_passes(0.3, 0.0, 2.5)  # not fluent
    assert behaviour_passes(0.1, 0.02, 1.0)  # 5x a non-zero baseline
    assert not behaviour_passes(0.05, 0.0, 1.0)  # 5x a zero baseline is no rise


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["vector", "lora"])
def test_experiment_runs_on_a_tiny_oracle(tmp_path, method):
    _, oracle_dir = make_oracle_dir(tmp_path, "llama", read_layers=(2,))
    out = tmp_path / "res"
    result = CliRunner().invoke(
        app,
        ["--oracle", str(oracle_dir), "--personas", "pirate", "--n-train", "3", "--n-eval", "3"]
        + ["--steps", "2", "--scales", "1", "--max-tokens", "4", "--out", str(out)]
        + ["--method", method, "--lr", "0.01"],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    row = data["personas"]["pirate"]["scales"]["steered"]["1.0"]
    assert 0.0 <= row["style_rate"] <= 1.0 and row["ppl_ratio"] > 0
    assert set(data["personas"]["pirate"]["scales"]) == {"steered", "random"}
    assert "| pirate | steered | 1.0 |" in (out / "results.md").read_text()
    assert data["settings"]["method"] == method
    saved = out / ("pirate.safetensors" if method == "vector" else "pirate/adapter_config.json")
    assert saved.is_file()
