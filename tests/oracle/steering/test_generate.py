"""Steered generation, the vector file format and the ``oracle steer`` / ``oracle generate`` CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from oracle.errors import OracleInputError
from oracle.hooks import count_hooks
from oracle.oracle import ActivationOracle
from oracle.steering.generate import generate, prompt_ids
from oracle.steering.hooks import add_vector
from oracle.steering.io import SteeringVector
from oracle.steering.measure import reply_nll
from tests.helpers import make_oracle_dir


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("gen"), "llama", read_layers=(2,))


@pytest.fixture(scope="module")
def ao(dirs):
    return ActivationOracle.load(oracle=str(dirs[1]), device="cpu", dtype="float32")


def big_vector(ao, seed=0, norm=30.0):
    v = torch.randn(ao.d_model, generator=torch.Generator().manual_seed(seed))
    return v / v.norm() * norm


def manual_greedy(ao, prompt, vector, layer, n, mark: str | None = None) -> str:
    """Greedy decoding with a full forward per token (no cache), the vector added by hand: at
    every position (``mark`` None), from the prompt's last position on ("reply"), or at that
    position alone ("first"); the reply's text, cut at EOS."""
    ids = prompt_ids(ao.tokenizer, [prompt])[0]
    out: list[int] = []
    with torch.no_grad(), ao.adapter_disabled():
        for _ in range(n):
            seq = ids + out
            mask_BT = None
            if mark is not None:
                mask_BT = torch.zeros(1, len(seq))
                mask_BT[0, len(ids) - 1 : None if mark == "reply" else len(ids)] = 1.0
            with add_vector(ao.target, layer, vector, mask_BT=mask_BT):
                logits = ao.target(input_ids=torch.tensor([seq]), use_cache=False).logits
            out.append(int(logits[0, -1].argmax()))
    eos = ao.tokenizer.eos_token_id
    out = out[: out.index(eos)] if eos in out else out
    return ao.tokenizer.decode(out, skip_special_tokens=True).strip()


def test_vector_applies_at_prompt_and_decode_steps(ao):
    vec = big_vector(ao)
    reply = generate(ao, ["Hello there"], vec, 1, 1.0, max_new_tokens=6)[0]
    assert reply == manual_greedy(ao, "Hello there", vec, 1, 6)
    assert count_hooks(ao.target) == 0


def test_apply_reply_steers_the_reply_and_not_the_prompt(ao):
    """apply='reply' equals greedy decoding (no cache) with the vector added from the prompt's
    last position on, and differs from adding it everywhere."""
    vec = big_vector(ao, seed=2)
    prompts = ["Hello there", "Tell me about the stars."]
    got = generate(ao, prompts, vec, 1, 1.0, max_new_tokens=6, apply="reply")
    for prompt, reply in zip(prompts, got, strict=True):
        assert reply == manual_greedy(ao, prompt, vec, 1, 6, mark="reply")
    assert got != generate(ao, prompts, vec, 1, 1.0, max_new_tokens=6)
    with pytest.raises(OracleInputError, match="apply must be one of"):
        generate(ao, prompts, vec, 1, 1.0, max_new_tokens=2, apply="prompt")
    assert count_hooks(ao.target) == 0


def test_apply_first_steers_the_reply_start_alone(ao):
    """apply='first' equals greedy decoding (no cache, a full forward per token) with the vector
    added at the prompt's last position alone in every forward: the reply's first token is
    steered and later tokens read that position through attention, never steered themselves."""
    vec = big_vector(ao, seed=3, norm=60.0)
    prompts = ["Hello there", "Tell me about the stars."]
    got = generate(ao, prompts, vec, 1, 1.0, max_new_tokens=6, apply="first")
    for prompt, reply in zip(prompts, got, strict=True):
        assert reply == manual_greedy(ao, prompt, vec, 1, 6, mark="first")
    assert got != generate(ao, prompts, vec, 1, 1.0, max_new_tokens=6, apply="reply")
    assert got != generate(ao, prompts, max_new_tokens=6)
    assert count_hooks(ao.target) == 0


def test_add_vector_skips_decode_steps_when_told(ao):
    from oracle.steering.hooks import add_vector, read_block

    vec = big_vector(ao, seed=4)
    ids_BT = torch.tensor(
        [prompt_ids(ao.tokenizer, ["Hi"])[0][:1]]
    )  # one position, as a decode step
    mask_BT = torch.zeros(1, 5)  # a mask of another shape: the prefill's
    with torch.no_grad(), ao.adapter_disabled():
        base = read_block(ao.target, ids_BT, None, 1)
        with add_vector(ao.target, 1, vec, mask_BT=mask_BT, decode=False):
            skipped = read_block(ao.target, ids_BT, None, 1)
        with add_vector(ao.target, 1, vec, mask_BT=mask_BT):
            added = read_block(ao.target, ids_BT, None, 1)
    torch.testing.assert_close(skipped, base)
    torch.testing.assert_close(added - base, vec.expand_as(base), atol=1e-5, rtol=0)
    assert count_hooks(ao.target) == 0


def test_scale_zero_is_unsteered_and_a_vector_changes_the_reply(ao):
    prompts = ["Hello there", "Tell me about the stars."]
    plain = generate(ao, prompts, max_new_tokens=8)
    assert generate(ao, prompts, big_vector(ao), 1, 0.0, max_new_tokens=8) == plain
    steered = generate(ao, prompts, big_vector(ao), 1, 3.0, max_new_tokens=8)
    assert steered != plain
    # batching gives the one-by-one replies
    assert [generate(ao, [p], max_new_tokens=8)[0] for p in prompts] == plain


def test_reply_nll_is_lower_for_the_models_own_reply(ao):
    reply = generate(ao, ["Hello there"], max_new_tokens=8)[0]
    own, other = reply_nll(ao, ["Hello there"] * 2, [reply, "zzzz qqqq xxxx"])
    assert own < other


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"vector": torch.zeros(7), "layer": 1}, "needs \\(64,\\)"),
        ({"vector": torch.full((64,), float("nan")), "layer": 1}, "NaN or inf"),
        (
            {"vector": torch.zeros(64), "layer": 1, "scale": float("inf")},
            "scale must be a finite number",
        ),
        ({"vector": torch.zeros(64), "layer": 12}, "out of range"),
        ({"vector": torch.zeros(64)}, "needs the layer"),
        ({"max_new_tokens": 0}, "max_new_tokens"),
    ],
)
def test_generate_bad_inputs(ao, kwargs, match):
    with pytest.raises(OracleInputError, match=match):
        generate(ao, ["Hello"], **kwargs)
    assert count_hooks(ao.target) == 0


def test_generate_rejects_empty_prompts(ao):
    with pytest.raises(OracleInputError, match="non-empty list"):
        generate(ao, [])
    with pytest.raises(OracleInputError, match="prompt is empty"):
        generate(ao, [""])


def test_vector_file_round_trip_and_errors(tmp_path):
    vec = SteeringVector(torch.arange(4.0), layer=1, scale=2.0, question="Q?", answer="A.")
    vec.losses = [3.0, 2.0]
    path = vec.save(tmp_path / "v.safetensors")
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["layer"] == 1 and meta["losses"] == [3.0, 2.0] and meta["d_model"] == 4
    loaded = SteeringVector.load(path)
    assert torch.equal(loaded.vector, vec.vector) and loaded.scale == 2.0
    with pytest.raises(OracleInputError, match="does not exist"):
        SteeringVector.load(tmp_path / "missing.safetensors")
    with pytest.raises(OracleInputError, match="must end in .safetensors"):
        vec.save(tmp_path / "v.pt")
    (tmp_path / "bad.safetensors").write_text("not a tensor file")
    with pytest.raises(OracleInputError, match="not a safetensors file"):
        SteeringVector.load(tmp_path / "bad.safetensors")


def test_cli_steer_then_generate(dirs, ao, tmp_path):
    from oracle_cli import app, load_commands

    load_commands()
    runner = CliRunner()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("Hello there\n\nHow are you today?\n")
    out = tmp_path / "pirate.safetensors"
    result = runner.invoke(
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
        + ["--no-choose"],
    )
    assert result.exit_code == 0, result.output
    meta = json.loads(out.with_suffix(".json").read_text())
    assert len(meta["losses"]) == 3 and meta["layer"] == 1 and meta["read_layer"] == 2
    result = runner.invoke(
        app,
        ["generate", "--prompt", "Hello there", "--steer", str(out), "--scale", "40"]
        + ["--max-tokens", "5", "--oracle", str(dirs[1]), "--device", "cpu", "--dtype", "float32"],
    )
    assert result.exit_code == 0, result.output
    vec = SteeringVector.load(out)
    assert vec.apply == "reply"  # the default recipe; generation adds it where it was optimised
    expected = generate(ao, ["Hello there"], vec.vector, 1, 40.0, max_new_tokens=5, apply="reply")[
        0
    ]
    assert result.stdout == expected + "\n"
    bad = runner.invoke(
        app,
        ["generate", "--prompt", "Hi", "--steer", str(out), "--scale", "nan"]
        + ["--oracle", str(dirs[1]), "--device", "cpu", "--dtype", "float32"],
    )
    assert isinstance(bad.exception, OracleInputError) and "scale" in str(bad.exception)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    bad = runner.invoke(
        app,
        ["steer", "--prompts", str(empty), "--question", "Q?", "--answer", "A."]
        + ["--out", str(out), "--oracle", str(dirs[1])],
    )
    assert isinstance(bad.exception, OracleInputError) and "holds no prompt" in str(bad.exception)


def test_system_prompt_goes_before_the_user_turn(ao):
    plain = prompt_ids(ao.tokenizer, ["Hello there"])[0]
    told = prompt_ids(ao.tokenizer, ["Hello there"], system="You are a pirate.")[0]
    assert len(told) > len(plain)
    assert "You are a pirate." in ao.tokenizer.decode(told)
    assert ao.tokenizer.decode(told).endswith(ao.tokenizer.decode(plain[-4:]))
    nll = reply_nll(ao, ["Hello there"], ["Arr"], system="You are a pirate.")
    assert len(nll) == 1 and nll[0] > 0


def test_cli_generate_with_a_scaled_steering_lora(dirs, tmp_path):
    """--scale multiplies a steering LoRA's update: 0 gives the unsteered reply, and any scale
    gives what the library gives inside scaled_adapter."""
    from oracle.steering import SteerConfig, steer
    from oracle.steering.lora import STEER_ADAPTER, save_steering_lora, scaled_adapter
    from oracle_cli import app, load_commands

    load_commands()
    lora_ao = ActivationOracle.load(oracle=str(dirs[1]), device="cpu", dtype="float32")
    cfg = SteerConfig(
        question="Q?", answer="A pirate.", read="prompt", method="lora", steps=3, lr=0.2
    )
    result = steer(lora_ao, ["Hello there", "How are you today?"], cfg)
    save_steering_lora(lora_ao, result, tmp_path / "lora")
    runner = CliRunner()
    base = ["generate", "--prompt", "Hello there", "--max-tokens", "6"]
    base += [
        "--oracle",
        str(dirs[1]),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--steer-adapter",
        str(tmp_path / "lora"),
    ]
    replies = {}
    for scale in ("0", "3"):
        out = runner.invoke(app, base + ["--scale", scale])
        assert out.exit_code == 0, out.output
        replies[scale] = out.stdout.rstrip("\n")
    unsteered = generate(lora_ao, ["Hello there"], max_new_tokens=6)[0]
    with scaled_adapter(lora_ao.target, 3.0):
        steered = generate(lora_ao, ["Hello there"], max_new_tokens=6, adapter=STEER_ADAPTER)[0]
    assert replies["0"] == unsteered and replies["3"] == steered
    bad = runner.invoke(app, base + ["--layer", "1"])
    assert isinstance(bad.exception, OracleInputError) and "--layer needs" in str(bad.exception)


def test_cli_generate_adds_a_vector_where_it_was_optimised(dirs, ao, tmp_path):
    from oracle_cli import app, load_commands

    load_commands()
    vec = big_vector(ao, seed=2)
    path = SteeringVector(vector=vec, layer=1, apply="reply").save(tmp_path / "r.safetensors")
    out = CliRunner().invoke(
        app,
        ["generate", "--prompt", "Hello there", "--steer", str(path), "--max-tokens", "6"]
        + ["--oracle", str(dirs[1]), "--device", "cpu", "--dtype", "float32", "--json"],
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    expected = generate(ao, ["Hello there"], vec, 1, 1.0, max_new_tokens=6, apply="reply")[0]
    assert payload["apply"] == "reply" and payload["reply"] == expected
    # --apply overrides where the saved vector is added
    out = CliRunner().invoke(
        app,
        ["generate", "--prompt", "Hello there", "--steer", str(path), "--max-tokens", "6"]
        + [
            "--apply",
            "first",
            "--scale",
            "2",
            "--oracle",
            str(dirs[1]),
            "--device",
            "cpu",
            "--dtype",
            "float32",
        ]
        + ["--json"],
    )
    assert out.exit_code == 0, out.output
    payload = json.loads(out.stdout)
    expected = generate(ao, ["Hello there"], vec, 1, 2.0, max_new_tokens=6, apply="first")[0]
    assert payload["apply"] == "first" and payload["reply"] == expected
    refused = CliRunner().invoke(
        app, ["generate", "--prompt", "Hi", "--apply", "first", "--oracle", str(dirs[1])]
    )
    assert isinstance(refused.exception, OracleInputError)
    assert "--apply needs --steer" in str(refused.exception)
