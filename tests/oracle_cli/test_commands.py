import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from oracle.tiny import save_tiny

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def run_cli(*args, check=True):
    proc = subprocess.run(
        [sys.executable, "-c", "from oracle_cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=300,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"oracle {' '.join(args)} failed:\n{proc.stderr}")
    return proc


def test_help_lists_commands():
    out = run_cli("--help").stdout
    for command in ("capture", "ask"):
        assert command in out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_capture_cli_equals_hidden_states(tmp_path):
    from oracle.models import load_model

    model_dir = save_tiny(tmp_path / "m", "llama")
    out = tmp_path / "acts.safetensors"
    run_cli(
        "capture",
        "--model",
        str(model_dir),
        "--prompt",
        "Hello there, how are you?",
        "--layers",
        "0,2",
        "--positions",
        "all",
        "--out",
        str(out),
    )
    acts = load_file(str(out))["activations"]
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["layers"] == [0, 2] and meta["model"] == str(model_dir)
    assert acts.shape == (2, len(meta["token_ids"]), 64) and acts.dtype == torch.float32
    model, _ = load_model(str(model_dir))
    with torch.no_grad():
        hs = model(
            input_ids=torch.tensor([meta["token_ids"]]), output_hidden_states=True
        ).hidden_states
    # the CLI captures in the model's dtype (auto: bf16 on a CPU with it) and saves float32
    torch.testing.assert_close(acts[0], hs[1][0].float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(acts[1], hs[3][0].float(), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ask_cli_prints_answer_alone_and_errors_cleanly(tmp_path):
    from tests.helpers import MESSAGES, make_oracle_dir

    _, oracle_dir = make_oracle_dir(tmp_path / "o", "llama")
    msgs = tmp_path / "chat.json"
    msgs.write_text(json.dumps(MESSAGES))
    proc = run_cli(
        "ask",
        "--oracle",
        str(oracle_dir),
        "--messages-file",
        str(msgs),
        "--question",
        "What persona?",
        "--max-new-tokens",
        "4",
        "--json",
    )
    payload = json.loads(proc.stdout)
    assert payload["answers"][0]["question"] == "What persona?"
    assert "pirate" not in "".join(payload["tokens_read"])
    bad = run_cli(
        "ask",
        "--oracle",
        str(oracle_dir),
        "--messages-file",
        str(msgs),
        "--question",
        "q",
        "--layer",
        "9",
        check=False,
    )
    assert bad.returncode == 2 and "out of range" in bad.stderr and "Traceback" not in bad.stderr
    missing = run_cli(
        "ask", "--oracle", str(tmp_path / "nope"), "--prompt", "hi", "--question", "q", check=False
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
