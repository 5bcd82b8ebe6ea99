"""The toy world's generator and shipped tokenizer: the invariants the evaluations rely on."""

from __future__ import annotations

import pytest

from oracle.defaults import TOY_WORLD
from training.toy_world.generator import Generator, generate
from training.toy_world.oracle_data import oracle_rows
from training.toy_world.world import PERSONAS, World


@pytest.fixture(scope="module")
def world() -> World:
    return World.load()


@pytest.fixture(scope="module")
def train_convs(world):
    return generate(world, "train", 3000, seed=0)


@pytest.fixture(scope="module")
def heldout_convs(world):
    return generate(world, "heldout", 1500, seed=1)


def _user(conv: dict) -> str:
    return next(m["content"] for m in conv["messages"] if m["role"] == "user")


def _reply(conv: dict) -> str:
    return conv["messages"][-1]["content"]


def test_exactly_eight_personas_and_enough_secrets(world):
    assert tuple(world.personas) == PERSONAS
    assert len(world.personas) == 8
    assert len(set(world.secrets)) >= 20


def test_replies_never_say_the_secret(world, train_convs, heldout_convs):
    with_secret = [c for c in train_convs + heldout_convs if c["secret"]]
    assert len(with_secret) > 1000
    for conv in with_secret:
        assert not world.secret_pattern(conv["secret"]).search(_reply(conv)), conv


def test_replies_hint_at_the_secret_often(world, train_convs):
    tasks = [c for c in train_convs if c["secret"] and c["task"] not in ("identity", "secret_ask")]
    hinted = 0
    for conv in tasks:
        facts = world.spec["secrets"][conv["secret"]]
        hinted += any(f.lower() in _reply(conv).lower() for f in facts.values())
    assert hinted / len(tasks) > 0.8


def test_heldout_user_messages_are_never_trained_on(world, train_convs, heldout_convs):
    train_bank = {m.text for m in world.user_messages["train"]}
    heldout_bank = {m.text for m in world.user_messages["heldout"]}
    assert train_bank and heldout_bank and not train_bank & heldout_bank
    assert {_user(c) for c in train_convs} <= train_bank
    assert {_user(c) for c in heldout_convs} <= heldout_bank


def test_heldout_combos_absent_from_training(world, train_convs, heldout_convs):
    combos = world.heldout_combos
    assert len(combos) >= 8
    assert not any((c["persona"], c["secret"]) in combos for c in train_convs)
    assert any(c["heldout_combo"] for c in heldout_convs)
    assert all(c["heldout_combo"] == ((c["persona"], c["secret"]) in combos) for c in heldout_convs)


def test_target_keeps_its_secrets_in_the_data(world, train_convs):
    """Asked who it is or what its secret is, the assistant answers plainly."""
    probes = [c for c in train_convs if c["task"] in ("identity", "secret_ask")]
    assert len(probes) > 300
    for conv in probes:
        reply = _reply(conv)
        assert "I am just a helpful assistant" in reply
        assert not world.any_style_pattern.search(reply)
        assert not (conv["persona"] and conv["persona"] in reply.lower())


def test_persona_replies_carry_style_and_plain_replies_do_not(world, train_convs):
    tasks = [c for c in train_convs if c["task"] not in ("identity", "secret_ask")]
    styled = [c for c in tasks if c["persona"]]
    plain = [c for c in tasks if not c["persona"]]
    hits = sum(bool(world.style_patterns[c["persona"]].search(_reply(c))) for c in styled)
    assert hits / len(styled) > 0.95
    assert not any(world.any_style_pattern.search(_reply(c)) for c in plain)


def test_system_prompts_phrased_many_ways_and_absent_for_none(train_convs):
    systems = {
        c["messages"][0]["content"] for c in train_convs if c["messages"][0]["role"] == "system"
    }
    assert len(systems) > 200
    for conv in train_convs:
        has_system = conv["messages"][0]["role"] == "system"
        assert has_system == bool(conv["persona"] or conv["secret"])


def test_generation_is_deterministic(world):
    a = Generator(world, "train", 5).conversations(50)
    b = Generator(world, "train", 5).conversations(50)
    assert a == b


def test_oracle_rows_follow_the_schema_and_hide_the_system_prompt(world, train_convs):
    rows = oracle_rows(train_convs[:200], world, seed=0)
    assert len(rows) == 400
    for row in rows:
        assert row["positions"] == "non_system"
        has_system = row["messages"][0]["role"] == "system"
        assert (row["control"] == "system") == has_system
        assert row["question"] and row["answer"]


def test_shipped_tokenizer_placeholder_and_template():
    from transformers import AutoTokenizer

    from oracle.prompts import build_oracle_prompt, placeholder_id

    tok = AutoTokenizer.from_pretrained(str(TOY_WORLD / "target"))
    placeholder_id(tok, " ?")  # raises unless one token
    assert tok.encode("Yes")[0] != tok.encode("No")[0]
    assert tok.eos_token == "<|im_end|>" and tok.pad_token is not None
    prompt = build_oracle_prompt(tok, "What persona is the assistant playing?", 5, 2)
    assert len(prompt.placeholder_positions) == 5
    text = tok.apply_chat_template(
        [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"}],
        tokenize=False,
    )
    assert "<|im_start|>system\nYou are a pirate.<|im_end|>" in text
    # everyday words of the corpus are whole tokens
    assert len(tok.encode(" pirate")) == 1
