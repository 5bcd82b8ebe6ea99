"""``oracle train`` from a YAML config with a builder mix, and a 2-process torchrun run."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from oracle.oracle import ActivationOracle
from oracle.tiny import save_tiny
from oracle_cli import app, load_commands

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_config(tmp_path: Path, **extra) -> Path:
    base = save_tiny(tmp_path / "base", "llama")
    (tmp_path / "corpus.txt").write_text(
        "The quick brown fox jumps over the lazy dog. Bake the bread at two hundred degrees.\n\n"
        "Tell me about the stars. Arr matey, the sea be calm tonight. Hello! How are you today?"
    )
    config = {
        "model": str(base),
        "output_dir": str(tmp_path / "oracle"),
        "train_data": [
            {"builder": "persona_qa", "n": 24, "weight": 2},
            {"builder": "context_prediction", "source": str(tmp_path / "corpus.txt"), "n": 8},
        ],
        "mix_size": 24,
        "eval_data": {"builder": "persona_qa", "n": 8, "seed": 7},
        "max_steps": 4,
        "batch_size": 4,
        "logging_steps": 1,
        "eval_steps": 2,
        **extra,
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cli_trains_from_yaml_and_flags_override(tmp_path):
    config = write_config(tmp_path)
    load_commands()
    result = CliRunner().invoke(
        app, ["train", "--config", str(config), "--lora-r", "4", "--read-layers", "[1, 2]"]
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "oracle"
    saved = json.loads((out / "training_config.json").read_text())
    assert saved["lora_r"] == 4 and saved["read_layers"] == [1, 2]
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and "eval_loss" in metrics
    assert any("eval_loss" in h for h in metrics["history"])  # periodic eval ran
    ao = ActivationOracle.load(oracle=out, device="cpu")
    assert ao.config.read_layers == [1, 2]


def test_cli_rejects_an_unknown_config_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: x\noutput_dir: y\nlora_rank: 4\n")
    load_commands()
    result = CliRunner().invoke(app, ["train", "--config", str(path)])
    assert result.exit_code != 0
    assert "lora_rank" in str(result.exception)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_torchrun_two_processes_train_and_save_a_loadable_oracle(tmp_path):
    config = write_config(tmp_path, eval_data=None, eval_steps=0)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "oracle_cli.train",
        "--config",
        str(config),
    ]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=280
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "oracle"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 4
    ao = ActivationOracle.load(oracle=out, device="cpu")
    assert ao.config.read_layers == [1, 2, 3]
