"""The toy-world steering experiment runs end to end on a tiny oracle (pipeline check only)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from evals.steering_rules import behaviour_passes, pick_scale
from scripts.experiments.steering_toy import app
from tests.helpers import make_oracle_dir


def test_pass_rule():
    assert behaviour_passes(0.3, 0.0, 1.5)
    assert not behaviour_passes(0.3, 0.0, 2.5)  # not fluent
    assert behaviour_passes(0.1, 0.02, 1.0)  # 5x a non-zero baseline
    assert not behaviour_passes(0.05, 0.0, 1.0)  # 5x a zero baseline is no rise


def _rows(*triples):
    return {
        str(s): {"style_rate": r, "ppl_ratio": p, "passes": behaviour_passes(r, 0.0, p)}
        for s, r, p in triples
    }


def test_scale_rules():
    # 0.9 and 1.0 pass; 1.0 is more on-style but sits at the perplexity bar.
    rows = _rows((0.8, 0.23, 1.3), (0.9, 0.37, 1.65), (1.0, 0.45, 1.95), (1.1, 0.5, 2.2))
    scales = [0.8, 0.9, 1.0, 1.1]
    assert pick_scale(rows, scales, "max-style", 0.0) == 1.0
    # margins: 0.9 -> min(1.23, 1.21) = 1.21; 1.0 -> min(1.5, 1.03) = 1.03
    assert pick_scale(rows, scales, "margin", 0.0) == 0.9
    # with a non-zero baseline the style bar is 5x it: 0.9 -> min(0.37 / 0.1, 1.21)
    assert pick_scale(rows, scales, "margin", 0.02) == 0.9
    # none passing: the most on-style fluent scale, for both rules
    rows = _rows((0.8, 0.1, 1.2), (0.9, 0.2, 1.8), (1.0, 0.4, 2.4))
    for rule in ("max-style", "margin"):
        assert pick_scale(rows, [0.8, 0.9, 1.0], rule, 0.0) == 0.9
    # nothing fluent: the smallest scale
    rows = _rows((1.0, 0.5, 3.0), (2.0, 0.9, 9.0))
    assert pick_scale(rows, [1.0, 2.0], "margin", 0.0) == 1.0
    with pytest.raises(ValueError, match="unknown rule"):
        pick_scale(rows, [1.0, 2.0], "best", 0.0)


@pytest.mark.parametrize(
    ("args", "needle"),
    [(["--choose", "best"], "unknown --choose"), (["--generate-apply", "x"], "--generate-apply")],
)
def test_unknown_options_are_refused_before_any_work(tmp_path, args, needle):
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "r")])
    assert result.exit_code != 0
    assert needle in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", ["vector", "lora", "vector-first"])
def test_experiment_runs_on_a_tiny_oracle(tmp_path, method):
    _, oracle_dir = make_oracle_dir(tmp_path, "llama", read_layers=(2,))
    out = tmp_path / "res"
    extra = []
    if method == "vector-first":  # optimised on the reply, generated from its start alone
        method, extra = "vector", ["--apply", "reply", "--generate-apply", "first"]
        extra += ["--read", "reply"]
    result = CliRunner().invoke(
        app,
        ["--oracle", str(oracle_dir), "--personas", "pirate", "--n-train", "3", "--n-eval", "3"]
        + ["--steps", "2", "--scales", "1", "--max-tokens", "4", "--out", str(out)]
        + ["--method", method, "--lr", "0.01", *extra],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "results.json").read_text())
    row = data["personas"]["pirate"]["scales"]["steered"]["1.0"]
    assert 0.0 <= row["style_rate"] <= 1.0 and row["ppl_ratio"] > 0
    assert set(data["personas"]["pirate"]["scales"]) == {"steered", "random"}
    assert "| pirate | steered | 1.0 |" in (out / "results.md").read_text()
    assert data["settings"]["method"] == method
    if extra:
        assert data["settings"]["generate_apply"] == "first"
        assert "generated with apply 'first'" in (out / "results.md").read_text()
    saved = out / ("pirate.safetensors" if method == "vector" else "pirate/adapter_config.json")
    assert saved.is_file()
