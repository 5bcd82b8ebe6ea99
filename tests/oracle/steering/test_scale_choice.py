"""A steering vector that knows how to be used: its apply mode and scale chosen on validation
prompts and saved with it; contrastive activation addition as a method beside the oracle's;
the command line and the HTTP jobs make and use vectors the same way."""

from __future__ import annotations

import json
import math

import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from oracle.errors import OracleInputError
from oracle.oracle import ActivationOracle
from oracle.steering.caa import caa_vector
from oracle.steering.choose import UseChooser, choose_use, split_validation
from oracle.steering.config import SteerConfig
from oracle.steering.generate import generate, prompt_ids
from oracle.steering.hooks import read_block
from oracle.steering.io import SteeringVector
from oracle.steering.make import make_steering_vector
from tests.helpers import make_oracle_dir

PROMPTS = ["Hello there", "How are you today?", "Tell me about the sea.", "What is bread?"]


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("choose"), "llama", read_layers=(2,))


@pytest.fixture(scope="module")
def ao(dirs):
    return ActivationOracle.load(oracle=str(dirs[1]), device="cpu", dtype="float32")


def unit(ao, seed=0):
    v = torch.randn(ao.d_model, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def test_the_choice_is_the_largest_effect_among_fluent_settings(ao):
    vector = unit(ao) * 20
    scales = (0.25, 1.0, 4.0, 16.0)

    def effect(prompts, replies):  # planted: more steering, more effect
        return sum(len(set(r.split())) for r in replies) + 0.0

    chooser = UseChooser(ao, vector, 1, PROMPTS[:2], effect, ("first", "all"), scales, 2.0, 6)
    lines = []
    while not chooser.finished:
        lines.append(chooser.step())
    choice = chooser.result()
    assert len(choice.candidates) == 8 and lines[0].startswith("unsteered")
    fluent = [c for c in choice.candidates if c.fluent]
    assert all(c.ppl_ratio <= 2.0 for c in fluent)
    assert all(not c.fluent for c in choice.candidates if c.ppl_ratio > 2.0)
    if fluent:
        best = max(fluent, key=lambda c: (c.effect, -c.scale))
        assert (choice.apply, choice.scale) == (best.apply, best.scale) and choice.found_fluent
    # the same grid run at once gives the same choice
    again = choose_use(ao, vector, 1, PROMPTS[:2], effect, ("first", "all"), scales, 2.0, 6)
    assert (again.apply, again.scale) == (choice.apply, choice.scale)


def test_validation_prompts_are_held_out_of_the_optimisation():
    train, val = split_validation(PROMPTS + ["a", "b", "c", "d"], None)
    assert len(val) == 2 and not set(val) & set(train)
    assert split_validation(PROMPTS, ["x"]) == (PROMPTS, ["x"])
    assert split_validation(PROMPTS[:2], None) == (PROMPTS[:2], PROMPTS[:2])


def test_caa_is_the_mean_difference_with_and_without_the_persona_prompt(ao):
    persona = "You are a pirate."
    vec = caa_vector(ao, PROMPTS[:2], persona, 1, read="prompt")
    # by hand: the user turn and header are the last tokens of both renderings
    diffs = []
    with torch.no_grad(), ao.adapter_disabled():
        for p in PROMPTS[:2]:
            plain = prompt_ids(ao.tokenizer, [p])[0]
            told = prompt_ids(ao.tokenizer, [p], system=persona)[0]
            k = 0
            while k < min(len(plain), len(told)) and plain[-1 - k] == told[-1 - k]:
                k += 1
            a = read_block(ao.target, torch.tensor([told]), None, 1)[0, -k:]
            b = read_block(ao.target, torch.tensor([plain]), None, 1)[0, -k:]
            diffs.append((a - b).mean(0))
    torch.testing.assert_close(vec, torch.stack(diffs).mean(0))
    assert vec.norm() > 0


def test_caa_by_default_contrasts_the_replies_written_with_and_without_the_persona(ao):
    persona = "You are a pirate."
    vec = caa_vector(ao, PROMPTS[:2], persona, 1, reply_tokens=6)
    # by hand: each reply (greedy, with the persona prompt or without) read after the prompt
    # alone, mean over its tokens; the difference of the two means over prompts
    told = generate(ao, PROMPTS[:2], max_new_tokens=6, system=persona)
    plain = generate(ao, PROMPTS[:2], max_new_tokens=6)
    assert told != plain  # the persona prompt changes what the toy target says

    def mean(replies):
        out = []
        with torch.no_grad(), ao.adapter_disabled():
            for p, r in zip(PROMPTS[:2], replies, strict=True):
                ids = prompt_ids(ao.tokenizer, [p])[0]
                rid = ao.tokenizer.encode(r, add_special_tokens=False)
                out.append(
                    read_block(ao.target, torch.tensor([ids + rid]), None, 1)[0, len(ids) :].mean(0)
                )
        return torch.stack(out).mean(0)

    torch.testing.assert_close(vec, mean(told) - mean(plain))
    assert not torch.allclose(vec, caa_vector(ao, PROMPTS[:2], persona, 1, read="prompt"))
    with pytest.raises(OracleInputError, match="caa reads"):
        caa_vector(ao, PROMPTS[:2], persona, 1, read="both")


def test_caa_needs_a_persona_prompt_and_no_question():
    with pytest.raises(OracleInputError, match="persona-prompt"):
        SteerConfig(method="caa")
    cfg = SteerConfig(method="caa", persona_prompt="You are a pirate.")
    assert cfg.question is None and cfg.apply == "all"
    with pytest.raises(OracleInputError, match="question"):
        SteerConfig(answer="A pirate.")


def test_a_caa_vector_is_made_chosen_and_saved_like_the_oracles(ao, tmp_path):
    cfg = SteerConfig(method="caa", persona_prompt="You are a pirate.", reply_tokens=6)
    vec = make_steering_vector(ao, PROMPTS, cfg)
    assert vec.layer == 1 and vec.read_layer == 2  # the same default layer as the oracle's
    assert vec.choice is not None and vec.choice["candidates"]
    path = vec.save(tmp_path / "caa.safetensors")
    back = SteeringVector.load(path)
    assert (back.apply, back.scale) == (vec.apply, vec.scale) and back.choice == vec.choice
    assert back.settings["persona_prompt"] == "You are a pirate."


@pytest.mark.timeout(300)
def test_cli_steer_saves_the_chosen_use_and_generate_uses_it(dirs, ao, tmp_path):
    from oracle_cli import app, load_commands

    load_commands()
    runner = CliRunner()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "pirate.safetensors"
    made = runner.invoke(
        app,
        ["steer", "--prompts", str(prompts), "--question", "What persona?", "--answer", "A pirate."]
        + [
            "--out",
            str(out),
            "--oracle",
            str(dirs[1]),
            "--steps",
            "3",
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ]
        + ["--reply-tokens", "6"],
    )
    assert made.exit_code == 0, made.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["choice"]["apply"] == meta["apply"] and meta["choice"]["scale"] == meta["scale"]
    assert len(meta["choice"]["candidates"]) == 24  # 3 modes x 8 scales
    vec = SteeringVector.load(out)
    used = runner.invoke(
        app,
        ["generate", "--prompt", "Hello there", "--steer", str(out), "--max-tokens", "5"]
        + ["--oracle", str(dirs[1]), "--device", "cpu", "--dtype", "float32", "--json"],
    )
    assert used.exit_code == 0, used.output
    payload = json.loads(used.stdout)
    assert (payload["apply"], payload["scale"]) == (vec.apply, vec.scale)
    expected = generate(ao, ["Hello there"], vec.vector, 1, vec.scale, 5, apply=vec.apply)[0]
    assert payload["reply"] == expected
    caa = runner.invoke(
        app,
        ["steer", "--prompts", str(prompts), "--method", "caa", "--persona-prompt"]
        + ["You are a pirate.", "--out", str(tmp_path / "caa.safetensors")]
        + [
            "--oracle",
            str(dirs[1]),
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--reply-tokens",
            "6",
        ],
    )
    assert caa.exit_code == 0, caa.output
    assert SteeringVector.load(tmp_path / "caa.safetensors").choice is not None


@pytest.mark.timeout(300)
def test_steering_jobs_over_http_make_and_use_vectors_as_the_library_does(dirs, ao):
    from oracle.engines.hf import HFEngine
    from serving.app import create_app
    from serving.settings import ServeSettings

    app = create_app(ServeSettings(oracle=str(dirs[1])), engine=HFEngine(ao))
    body = {
        "prompts": PROMPTS,
        "question": "What persona?",
        "answer": "A pirate.",
        "steps": 3,
        "reply_tokens": 6,
    }
    with TestClient(app) as client:
        response = client.post("/v1/steer", json=body)
        assert response.status_code == 200, response.text
        out = response.json()
        # the library, with the same settings (and its defaults for the rest)
        cfg = SteerConfig(question="What persona?", answer="A pirate.", steps=3, reply_tokens=6)
        vec = make_steering_vector(ao, PROMPTS, cfg)
        assert (out["apply"], out["scale"]) == (vec.apply, vec.scale)
        assert [(c["apply"], c["scale"], c["fluent"]) for c in out["choice"]["candidates"]] == [
            (c["apply"], c["scale"], c["fluent"]) for c in vec.choice["candidates"]
        ]
        job = client.post("/v1/steer", json={**body, "background": True})
        assert job.status_code == 202, job.text
        job_id = job.json()["job_id"]
        for _ in range(600):
            state = client.get(f"/v1/steer/{job_id}").json()
            if state["status"] in ("done", "failed"):
                break
            import time

            time.sleep(0.1)
        assert state["status"] == "done", state
        assert state["result"]["scale"] == vec.scale and state["result"]["apply"] == vec.apply
        # /v1/generate with the job's id uses its layer, scale and apply mode
        gen = client.post(
            "/v1/generate",
            json={"prompts": ["Hello there"], "max_tokens": 5, "steering": {"id": job_id}},
        )
        assert gen.status_code == 200, gen.text
        expected = generate(ao, ["Hello there"], vec.vector, 1, vec.scale, 5, apply=vec.apply)
        assert gen.json()["replies"] == expected
        missing = client.post("/v1/generate", json={"prompts": ["Hi"], "steering": {"id": "nope"}})
        assert missing.status_code == 404, missing.text
        assert math.isfinite(out["choice"]["effect"])
