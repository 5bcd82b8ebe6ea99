"""Steering through the oracle on tiny random models: only the vector (or the steering LoRA)
trains, every weight is left bitwise unchanged, the loss goes down, bad input fails clearly."""

from __future__ import annotations

import pytest
import torch

from oracle.errors import OracleInputError
from oracle.hooks import count_hooks
from oracle.oracle import ActivationOracle
from oracle.steering import STEER_ADAPTER, SteerConfig, resolve_layers, steer
from oracle.steering.hooks import active_adapter, read_block
from tests.helpers import make_oracle_dir

PROMPTS = ["Hello there", "How are you today?", "Tell me about the stars.", "What is the weather?"]
Q, A = "What persona is the assistant playing?", "A pirate."


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("steer"), "llama", read_layers=(2,))


def load(oracle_dir) -> ActivationOracle:
    return ActivationOracle.load(oracle=str(oracle_dir), device="cpu", dtype="float32")


def snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def check_frozen(model, allowed: set[str]):
    """Callback factory: after every step no model weight outside ``allowed`` has a gradient."""
    seen: list[int] = []

    def callback(step, _metrics):
        for name, param in model.named_parameters():
            if name in allowed:
                continue
            assert param.grad is None, f"{name} got a gradient at step {step}"
        seen.append(step)

    return callback, seen


def test_vector_steering_trains_only_the_vector(dirs):
    ao = load(dirs[1])
    before = snapshot(ao.target)
    callback, seen = check_frozen(ao.target, allowed=set())
    cfg = SteerConfig(question=Q, answer=A, read="prompt", steps=4, batch_size=2, kl_weight=0.1)
    result = steer(ao, PROMPTS, cfg, callback=callback)
    assert seen == [0, 1, 2, 3]
    assert result.vector is not None and result.vector.shape == (ao.d_model,)
    assert result.vector.norm() > 0, "no gradient reached the vector"
    assert (result.layer, result.read_layer) == (1, 2)
    for name, param in ao.target.named_parameters():
        assert torch.equal(param, before[name]), f"{name} changed"
        assert param.grad is None and not param.requires_grad
    assert count_hooks(ao.target) == 0


def test_vector_loss_decreases_and_norm_bound_holds(dirs):
    ao = load(dirs[1])
    cfg = SteerConfig(
        question=Q, answer=A, read="prompt", steps=25, lr=0.2, kl_weight=0.0, max_norm=0.5
    )
    norms: list[float] = []
    result = steer(ao, PROMPTS, cfg, callback=lambda _s, m: norms.append(m["norm"]))
    assert sum(result.answer_nll[-3:]) / 3 < sum(result.answer_nll[:3]) / 3 - 0.01
    assert max(norms) <= 0.5 * result.reference_norm * (1 + 1e-5)
    assert result.vector.norm() == pytest.approx(norms[-1], rel=1e-5)


@pytest.mark.parametrize("apply", ["reply", "first"])
def test_apply_reply_adds_the_vector_from_the_last_prompt_position_on(dirs, tmp_path, apply):
    """apply='reply': in optimisation the vector reaches the reply's positions (from the one
    before its first read token) and no earlier one; apply='first': that position alone. The
    saved vector says which."""
    from oracle.steering import SteeringRun
    from oracle.steering.io import SteeringVector

    ao = load(dirs[1])
    cfg = SteerConfig(
        question=Q, answer=A, steps=2, batch_size=2, read="reply", reply_tokens=6, apply=apply
    )
    run = SteeringRun(ao, PROMPTS, cfg)
    idx = list(range(len(run.core.items)))
    ids_BT, mask_BT = run.core.batch(idx)
    steer_BT = run.core.reply_mask(idx, ids_BT.shape[1])
    for b, (ids, read) in enumerate(run.core.items):
        first = min(read) - 1
        end = len(ids) if apply == "reply" else first + 1
        assert steer_BT[b, :first].sum() == 0 and steer_BT[b, first:end].eq(1).all()
        assert steer_BT[b, end:].sum() == 0  # nothing after (and not on padding)
    vector = torch.randn(ao.d_model, generator=torch.Generator().manual_seed(1)) * 5
    with torch.no_grad():
        with ao.adapter_disabled():
            base_BTD = read_block(ao.target, ids_BT, mask_BT, run.core.layer)
        with run.core.steered(vector, steer_BT):
            steered_BTD = read_block(ao.target, ids_BT, mask_BT, run.core.layer)
    # at the steering block's own output the difference is exactly mask * vector
    torch.testing.assert_close(
        steered_BTD - base_BTD, steer_BT[..., None] * vector, atol=1e-5, rtol=0
    )
    while not run.finished:
        run.step()
    result = run.result()
    assert result.vector.norm() > 0
    path = result.steering_vector().save(tmp_path / "v.safetensors")
    assert SteeringVector.load(path).apply == apply
    assert count_hooks(ao.target) == 0


def test_reading_the_reply_reads_only_the_targets_own_reply(dirs):
    """read='reply': each prompt is followed by the unsteered target's greedy reply, the oracle
    reads the reply's tokens alone, and still only the vector trains."""
    from oracle.inputs import TargetInput, tokenize_input
    from oracle.positions import select_positions
    from oracle.steering import SteeringRun
    from oracle.steering.generate import generate
    from oracle.steering.measure import with_replies

    ao = load(dirs[1])
    before = snapshot(ao.target)
    replies = generate(ao, PROMPTS, max_new_tokens=6)
    conversations = with_replies(ao, PROMPTS, max_new_tokens=6)
    kept = [(p, r) for p, r in zip(PROMPTS, replies, strict=True) if r.strip()]
    assert [[m["content"] for m in c] for c in conversations] == [[p, r] for p, r in kept]
    cfg = SteerConfig(question=Q, answer=A, steps=3, batch_size=2, read="reply", reply_tokens=6)
    run = SteeringRun(ao, PROMPTS, cfg)
    for conv, (ids, positions) in zip(conversations, run.core.items, strict=True):
        tok = tokenize_input(ao.tokenizer, TargetInput(messages=conv))
        assert ids == tok.input_ids
        assert positions == select_positions(tok, "role:assistant")
        user_end = max(select_positions(tok, "role:user"))
        assert min(positions) > user_end, "a read position lies before the reply"
    while not run.finished:
        run.step()
    result = run.result()
    assert result.vector.norm() > 0
    for name, param in ao.target.named_parameters():
        assert torch.equal(param, before[name]), f"{name} changed"
    assert count_hooks(ao.target) == 0


def test_reading_the_reply_without_a_chat_template_is_a_clear_error(tmp_path):
    _, oracle_dir = make_oracle_dir(tmp_path, "gpt2", read_layers=(2,))
    ao = load(oracle_dir)
    cfg = SteerConfig(question=Q, answer=A, steps=1, read="reply")
    with pytest.raises(OracleInputError, match="needs a chat template.*--read prompt"):
        steer(ao, PROMPTS, cfg)
    assert count_hooks(ao.target) == 0


def test_lora_steering_trains_only_the_steering_adapter(dirs):
    ao = load(dirs[1])
    before = snapshot(ao.target)
    oracle_acts = [torch.randn(3, ao.d_model, generator=torch.Generator().manual_seed(0))]
    answer_before = ao.p_yes(oracle_acts, ["Is the assistant a pirate?"])
    ids_BT = torch.tensor([ao.tokenizer.encode("Hello there")])
    with ao.adapter_disabled():
        base_read = read_block(ao.target, ids_BT, None, 2).detach()

    def callback(step, _m):
        for name, param in ao.target.named_parameters():
            if f".{STEER_ADAPTER}." in name:
                continue
            assert param.grad is None, f"{name} got a gradient"

    cfg = SteerConfig(
        question=Q, answer=A, read="prompt", method="lora", steps=6, lr=0.02, kl_weight=0.0
    )
    result = steer(ao, PROMPTS, cfg, callback=callback)
    assert result.adapter == STEER_ADAPTER and result.vector is None
    assert sum(result.answer_nll[-2:]) < sum(result.answer_nll[:2])
    after = dict(ao.target.named_parameters())
    changed = [n for n in after if n in before and not torch.equal(after[n], before[n])]
    assert changed == [], f"weights outside the steering adapter changed: {changed[:3]}"
    new = [n for n in after if n not in before]
    assert new and all(f".{STEER_ADAPTER}." in n for n in new)
    assert any("lora_B" in n and after[n].abs().sum() > 0 for n in new), "steer LoRA not trained"
    assert ao.target.active_adapter == "oracle"
    # the oracle still answers as before: the steering adapter is off while it answers
    assert ao.p_yes(oracle_acts, ["Is the assistant a pirate?"]) == pytest.approx(answer_before)
    with torch.no_grad(), active_adapter(ao.target, STEER_ADAPTER):
        steered_read = read_block(ao.target, ids_BT, None, 2)
    assert not torch.allclose(steered_read, base_read, atol=1e-4)


def test_untrained_steering_lora_captures_the_base_model(dirs):
    """With lr 0 the steering LoRA stays at B = 0: the steered capture must then be the base
    model's exactly, so the oracle adapter is off while the steering adapter is on."""
    ao = load(dirs[1])
    ids_BT = torch.tensor([ao.tokenizer.encode("Hello there")])
    with torch.no_grad(), ao.adapter_disabled():
        base_read = read_block(ao.target, ids_BT, None, 2)
    with torch.no_grad():
        oracle_read = read_block(ao.target, ids_BT, None, 2)
    assert not torch.allclose(oracle_read, base_read, atol=1e-4)  # the oracle adapter matters
    cfg = SteerConfig(
        question=Q, answer=A, read="prompt", method="lora", steps=1, lr=0.0, kl_weight=0.0
    )
    steer(ao, PROMPTS[:2], cfg)
    with torch.no_grad(), active_adapter(ao.target, STEER_ADAPTER):
        steered_read = read_block(ao.target, ids_BT, None, 2)
    torch.testing.assert_close(steered_read, base_read, rtol=0, atol=0)


def test_lora_capture_runs_without_the_oracle_adapter(dirs, tmp_path):
    """The steering adapter alone on the base model gives the same capture as on the oracle."""
    from oracle.steering.lora import load_steering_lora, save_steering_lora

    ao = load(dirs[1])
    cfg = SteerConfig(
        question=Q, answer=A, read="prompt", method="lora", steps=3, lr=0.05, kl_weight=0.0
    )
    result = steer(ao, PROMPTS[:2], cfg)
    save_steering_lora(ao, result, tmp_path / "lora")
    # the saved adapter names no path of this machine (peft records the base's load path)
    for name in ("adapter_config.json", "README.md"):
        saved = tmp_path / "lora" / name
        assert not saved.is_file() or str(dirs[0]) not in saved.read_text()
    plain = ActivationOracle.load(target=str(dirs[0]), device="cpu", dtype="float32")
    plain = load_steering_lora(plain, tmp_path / "lora")
    ids_BT = torch.tensor([ao.tokenizer.encode("Tell me about the stars.")])
    with torch.no_grad():
        with active_adapter(ao.target, STEER_ADAPTER):
            on_oracle = read_block(ao.target, ids_BT, None, 2)
        with active_adapter(plain.target, STEER_ADAPTER):
            on_base = read_block(plain.target, ids_BT, None, 2)
    torch.testing.assert_close(on_oracle, on_base)


def test_scaled_steering_lora_scales_its_update_and_restores(dirs):
    """Scale 0 is the base model, scale 1 the trained LoRA, scale 2 twice its update at the
    first block it touches; the scaling is restored on exit, even after an exception."""
    from oracle.steering.lora import scaled_adapter

    ao = load(dirs[1])
    cfg = SteerConfig(
        question=Q, answer=A, read="prompt", method="lora", steps=3, lr=0.05, kl_weight=0.0
    )
    steer(ao, PROMPTS[:2], cfg)
    ids_BT = torch.tensor([ao.tokenizer.encode("Hello there")])

    def read(layer, scale=None):
        with torch.no_grad(), active_adapter(ao.target, STEER_ADAPTER):
            if scale is None:
                return read_block(ao.target, ids_BT, None, layer)
            with scaled_adapter(ao.target, scale):
                return read_block(ao.target, ids_BT, None, layer)

    with torch.no_grad(), ao.adapter_disabled():
        base = read_block(ao.target, ids_BT, None, 2)
    torch.testing.assert_close(read(2, 0.0), base, rtol=0, atol=1e-6)
    torch.testing.assert_close(read(2, 1.0), read(2))
    assert not torch.allclose(read(2), base, atol=1e-4)
    # the scaling itself: every LoRA layer of the adapter (not the oracle's), only while inside
    layers = [m for m in ao.target.modules() if isinstance(getattr(m, "scaling", None), dict)]
    before = [m.scaling[STEER_ADAPTER] for m in layers if STEER_ADAPTER in m.scaling]
    oracle_scaling = [m.scaling["oracle"] for m in layers if "oracle" in m.scaling]
    assert before and oracle_scaling
    with pytest.raises(RuntimeError, match="boom"), scaled_adapter(ao.target, 2.0):
        inside = [m.scaling[STEER_ADAPTER] for m in layers if STEER_ADAPTER in m.scaling]
        assert inside == [2.0 * b for b in before]
        assert [m.scaling["oracle"] for m in layers if "oracle" in m.scaling] == oracle_scaling
        raise RuntimeError("boom")
    assert [m.scaling[STEER_ADAPTER] for m in layers if STEER_ADAPTER in m.scaling] == before
    with pytest.raises(OracleInputError, match="finite"), scaled_adapter(ao.target, float("inf")):
        pass
    with pytest.raises(OracleInputError, match="no LoRA named"), scaled_adapter(ao.target, 1, "x"):
        pass


@pytest.mark.parametrize("family", ["gpt2", "gemma"])
def test_vector_steering_other_families(tmp_path, family):
    _, oracle_dir = make_oracle_dir(tmp_path, family, read_layers=(2,))
    ao = load(oracle_dir)
    before = snapshot(ao.target)
    result = steer(
        ao, PROMPTS[:2], SteerConfig(question=Q, answer=A, read="prompt", steps=2, kl_weight=0.1)
    )
    assert result.vector.norm() > 0
    assert all(torch.equal(p, before[n]) for n, p in ao.target.named_parameters())


@pytest.mark.parametrize(
    ("prompts", "kwargs", "match"),
    [
        ([], {}, "at least one target prompt"),
        (["  "], {}, "prompt is empty"),
        (PROMPTS, {"answer": ""}, "answer is missing"),
        (PROMPTS, {"question": " "}, "question is missing"),
        (PROMPTS, {"layer": 2}, "must be below the read layer"),
        (PROMPTS, {"layer": 9}, "out of range"),
        (PROMPTS, {"read_layer": 7}, "out of range"),
        (PROMPTS, {"read_layer": 0}, "no block comes before it"),
        (PROMPTS, {"method": "sae"}, "method must be one of"),
        (PROMPTS, {"steps": 0}, "steps must be"),
        (PROMPTS, {"lr": float("nan")}, "lr must be"),
        (PROMPTS, {"max_norm": float("inf")}, "max_norm must be"),
        (PROMPTS, {"read": "both"}, "read must be one of"),
        (PROMPTS, {"read": "reply", "reply_tokens": 0}, "reply_tokens must be"),
        (PROMPTS, {"apply": "prompt"}, "apply must be one of"),
        (PROMPTS, {"apply": "reply"}, "apply 'reply' needs read 'reply'"),
        (PROMPTS, {"apply": "reply", "read": "reply", "method": "lora"}, "and the vector"),
        (PROMPTS, {"apply": "first"}, "apply 'first' needs read 'reply'"),
    ],
)
def test_bad_inputs_fail_clearly(dirs, prompts, kwargs, match):
    ao = load(dirs[1])
    fields = {"question": Q, "answer": A, "steps": 1, "read": "prompt", **kwargs}
    with pytest.raises(OracleInputError, match=match):
        steer(ao, prompts, SteerConfig(**fields))
    assert count_hooks(ao.target) == 0


def test_resolve_layers_defaults_to_the_block_before_the_read(dirs):
    ao = load(dirs[1])
    assert resolve_layers(ao, None, None) == (1, 2)
    assert resolve_layers(ao, 0, 3) == (0, 3)
    assert resolve_layers(ao, -4, -1) == (0, 3)
