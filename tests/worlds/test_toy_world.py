"""The toy world's generator and shipped tokenizer: the invariants the evaluations rely on."""

from __future__ import annotations

from collections import Counter

import pytest

from worlds.toy.generator import Generator, generate, hint_start
from worlds.toy.oracle_data import OracleDataConfig, oracle_rows
from worlds.toy.questions import QUESTIONS
from worlds.toy.world import PERSONAS, TOY_WORLD, World


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


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(TOY_WORLD / "target"))


def test_oracle_rows_follow_the_schema_and_hide_the_system_prompt(world, train_convs, tokenizer):
    cfg = OracleDataConfig(rows_per_conversation=1)
    rows = oracle_rows(train_convs[:600], world, seed=0, config=cfg, tokenizer=tokenizer)
    families = Counter(r["source"].split("/")[1] for r in rows)
    shares = cfg.families
    assert set(families) == set(shares)
    for family, share in shares.items():  # the recipe's shares, within sampling noise
        assert abs(families[family] / len(rows) - share / sum(shares.values())) < 0.06, families
    for row in rows:
        has_system = row["messages"][0]["role"] == "system"
        assert (row["control"] == "system") == has_system
        assert row["question"] and row["answer"]
        if row["source"].startswith("toy_world/context"):
            assert row["positions"].startswith("indices:") and row["sample_positions"] is False
        else:
            assert row["positions"] == "non_system"


def test_every_family_has_five_heldout_wordings_never_trained_on(world, train_convs, tokenizer):
    for family, wordings in QUESTIONS.items():
        assert len(wordings["heldout"]) >= 5, family
        assert not set(wordings["heldout"]) & set(wordings["train"]), family
    cfg = OracleDataConfig(secret_hint_window_share=0.5)
    rows = oracle_rows(train_convs[:400], world, seed=1, config=cfg, tokenizer=tokenizer)
    heldout = set()
    for wordings in QUESTIONS.values():
        for w in wordings["heldout"]:
            if "{k}" in w:
                heldout |= {w.format(k=k) for k in (1, 2, 3)}
            elif "{s}" in w:
                heldout |= {w.format(s=s) for s in world.secrets}
            elif "{p}" in w:
                heldout |= {
                    w.format(a=world.spec["personas"][p]["article"], p=p) for p in world.personas
                }
            else:
                heldout.add(w)
    assert not {r["question"] for r in rows} & heldout


def test_context_rows_answer_the_tokens_around_a_user_window(world, train_convs, tokenizer):
    from oracle.inputs import TargetInput, tokenize_input

    cfg = OracleDataConfig(families={"persona": 0.5, "context": 0.5})
    rows = [
        r
        for r in oracle_rows(train_convs[:200], world, seed=2, config=cfg, tokenizer=tokenizer)
        if r["source"].startswith("toy_world/context")
    ]
    assert len(rows) > 100
    for row in rows[:60]:
        tok = tokenize_input(tokenizer, TargetInput(messages=row["messages"]))
        window = [int(i) for i in row["positions"].split(":")[1].split(",")]
        user = next(m["content"] for m in row["messages"] if m["role"] == "user")
        start = tok.text.index(user)
        assert all(start <= tok.offsets[i][0] < start + len(user) for i in window)
        k = int(next(w for w in row["question"].split() if w.isdigit()))
        before = tok.text[tok.offsets[window[0] - k][0] : tok.offsets[window[0] - 1][1]]
        after = tok.text[tok.offsets[window[-1] + 1][0] : tok.offsets[window[-1] + k][1]]
        assert (
            row["answer"]
            == (
                before if "before" in row["question"] or "preced" in row["question"] else after
            ).strip()
        )


def test_hint_windows_end_just_before_the_hint_and_hide_the_secret(world, train_convs, tokenizer):
    from oracle.inputs import TargetInput, tokenize_input

    with_secret = [c for c in train_convs if c["secret"]]
    hinted = [c for c in with_secret if hint_start(world, c["messages"][-1]["content"]) is not None]
    assert 0.6 < len(hinted) / len(with_secret) < 0.95  # task replies hint 90% of the time
    assert all(
        hint_start(world, c["messages"][-1]["content"]) is None
        for c in train_convs
        if not c["secret"]
    )
    cfg = OracleDataConfig(
        families={"secret": 1.0},
        rows_per_conversation=1,
        no_reply_share=0.0,
        secret_hint_window_share=1.0,
    )
    rows = oracle_rows(hinted[:80], world, seed=3, config=cfg, tokenizer=tokenizer)
    assert all(r["source"] == "toy_world/secret/hint_window" for r in rows)
    for row in rows:
        tok = tokenize_input(tokenizer, TargetInput(messages=row["messages"]))
        window = [int(i) for i in row["positions"].split(":")[1].split(",")]
        reply = row["messages"][-1]["content"]
        fact_at = tok.text.index(reply) + hint_start(world, reply)
        assert tok.offsets[window[-1]][1] <= fact_at < tok.offsets[window[-1] + 1][1]
        read = tok.text[tok.offsets[window[0]][0] : tok.offsets[window[-1]][1]]
        assert row["answer"].rstrip(".").lower() not in read.lower()


def test_fewer_styled_persona_rows_and_secret_rows_naming_a_word(world, train_convs):
    base = oracle_rows(train_convs, world, seed=4)
    cfg = OracleDataConfig(persona_styled_share=0.2, secret_absent_share=0.2)
    fewer = oracle_rows(train_convs, world, seed=4, config=cfg)

    def styled_share(rows):
        persona = [
            r for r in rows if r["source"] == "toy_world/persona" and r["answer"] != "No persona."
        ]
        styled = [
            r
            for r in persona
            if r["messages"][-1]["role"] == "assistant"
            and world.any_style_pattern.search(r["messages"][-1]["content"])
        ]
        return len(styled) / len(persona)

    def naming_share(rows):
        secret = [r for r in rows if r["source"] == "toy_world/secret"]
        return sum(r["answer"] != "No secret word." for r in secret) / len(secret)

    assert styled_share(fewer) < styled_share(base) - 0.3
    assert naming_share(fewer) > naming_share(base) + 0.2


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
