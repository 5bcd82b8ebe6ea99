"""One capture-then-answer path: ``oracle ask --prompt`` on the toy oracle answers as
``POST /v1/query`` does with the same plain prompt (the core's rule: a plain prompt under the
oracle's ``non_system`` default reads every position; it has no system prompt)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from fastapi.testclient import TestClient

from oracle.engines.base import Engine
from oracle.inputs import TargetInput
from serving.app import create_app
from serving.settings import ServeSettings

PROMPT = "Arr, I sail the seas and bury my gold."
QUESTION = "What persona is the assistant playing?"


def test_the_default_positions_of_a_plain_prompt_are_all(toy_hf_engine):
    assert toy_hf_engine.config.positions == "non_system"
    request = toy_hf_engine.capture_request(TargetInput(prompt=PROMPT))
    cap = toy_hf_engine.capture([request])[0]
    assert cap.positions == list(range(len(cap.token_ids)))
    chat = TargetInput(
        messages=[{"role": "system", "content": "S."}, {"role": "user", "content": PROMPT}]
    )
    chat_cap = toy_hf_engine.capture([toy_hf_engine.capture_request(chat)])[0]
    assert 0 not in chat_cap.positions  # messages keep the non_system default


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ask_with_a_prompt_answers_as_http_does(toy_hf_engine, toy_oracle_dirs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "oracle_cli", "ask", "--prompt", PROMPT, "--question", QUESTION,
         "--dtype", "float32", "--device", "cpu", "--json"],
        capture_output=True, text=True, env=env, timeout=280,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    cli = json.loads(proc.stdout)
    settings = ServeSettings(oracle=str(toy_oracle_dirs[0]))
    with TestClient(create_app(settings, engine=toy_hf_engine)) as client:
        response = client.post(
            "/v1/query", json={"prompt": PROMPT, "questions": [QUESTION], "max_tokens": 32}
        )
    assert response.status_code == 200, response.text
    http = response.json()
    assert cli["answers"][0]["answer"] == http["answers"][0]["answer"]
    assert cli["answers"][0]["answer"]  # an answer, not an empty string
    assert cli["positions"] == http["positions"] and cli["layer"] == http["layer"]
    _, answers = toy_hf_engine.query(PROMPT, [QUESTION], max_new_tokens=32)  # the library
    assert answers[0].text == cli["answers"][0]["answer"]
    assert isinstance(toy_hf_engine, Engine)
