"""The shipped toy world, on its real weights: the oracle recovers hidden personas, and
``oracle ask`` with no model arguments uses it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from oracle.defaults import default_oracle, default_target
from worlds.toy.questions import NO_PERSONA, PERSONA_QUESTIONS, parse_persona
from worlds.toy.world import TOY_WORLD, World

pytestmark = pytest.mark.skipif(
    not (TOY_WORLD / "oracle" / "oracle_config.json").is_file(), reason="toy world not built"
)


@pytest.fixture(scope="module")
def ao():
    from oracle.oracle import ActivationOracle

    return ActivationOracle.load(oracle=default_oracle(), dtype="float32", device="cpu")


def test_defaults_point_at_the_shipped_toy_world():
    config = json.loads((default_oracle() / "oracle_config.json").read_text())
    assert config["base_model"] == "../target"  # relative: works after a clone
    assert config["positions"] == "non_system"
    assert (default_oracle() / ".." / "target").resolve() == TOY_WORLD.joinpath("target").resolve()
    assert default_target().endswith("target")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_oracle_recovers_personas_of_heldout_conversations(ao):
    """One held-out conversation per persona (user message never trained on), the generator's
    reference reply, and a "who are you" turn whose reply carries no style; plus no system
    prompt."""
    from worlds.toy.generator import Generator

    world = World.load()
    gen = Generator(world, "heldout", seed=123)
    convs = [gen.make(p, None, gen.user_message()) for p in world.personas]
    convs.append(gen.make("pirate", None, gen.identity[0]))
    assert "helpful assistant" in convs[-1]["messages"][-1]["content"]
    none = gen.make(None, None, gen.tasks[0])
    caps = ao.capture([c["messages"] for c in [*convs, none]], positions="non_system")
    question = PERSONA_QUESTIONS["train"][0]
    answers = ao.answer([c.activations[0] for c in caps], [question] * len(caps), max_new_tokens=6)
    found = [parse_persona(a, world.personas) for a in answers[:-1]]
    truth = [c["persona"] for c in convs]
    correct = sum(f == t for f, t in zip(found, truth, strict=True))
    assert correct >= len(convs) - 1, list(zip(truth, answers, strict=False))
    assert found[-1] == "pirate", answers[-2]  # the reply says nothing; the activations do
    assert answers[-1] == NO_PERSONA


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_oracle_ask_with_no_model_arguments(tmp_path):
    messages = [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "I am just a helpful assistant."},
    ]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(messages))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "from oracle_cli import main; main()",
            "ask",
            "--messages-file",
            str(path),
            "--question",
            "What persona is the assistant playing?",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=280,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    payload = json.loads(out.stdout)
    assert "pirate" in payload["answers"][0]["answer"].lower()
    assert payload["positions"] and 0 not in payload["positions"]  # system tokens not read
