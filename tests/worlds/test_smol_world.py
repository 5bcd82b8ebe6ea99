"""The SmolLM2 world's data: spec, splits, rows, suite items and resumable replies (offline,
on tiny models; the real model's test is in test_smol_real.py)."""

from __future__ import annotations

import json

import pytest

from oracle.inputs import tokenize_input
from oracle.positions import select_positions
from tests.helpers import build_tiny_model
from training.schema import validate_row
from worlds.smol import questions as Q
from worlds.smol.generator import generate
from worlds.smol.oracle_data import context_rows, conversation_rows
from worlds.smol.replies import generate_replies, read_jsonl
from worlds.smol.suite import context_items, conversation_items
from worlds.smol.world import SmolWorld


@pytest.fixture(scope="module")
def world():
    return SmolWorld.load()


@pytest.fixture(scope="module")
def chatml():
    return build_tiny_model("qwen2", seed=0)


def test_spec_sizes_and_disjoint_splits(world):
    assert len(world.train_personas) >= 40 and len(world.heldout_personas) >= 4
    assert len(world.secrets) >= 20
    users = world.user_messages
    assert not {m.text for m in users["train"]} & {m.text for m in users["heldout"]}
    for family, wordings in Q.QUESTIONS.items():
        assert len(wordings["heldout"]) >= 5, family
        assert not set(wordings["train"]) & set(wordings["heldout"]), family
    phr = world.spec["persona_phrasings"]
    assert not set(phr["train"]) & set(phr["heldout"])


def test_training_conversations_never_use_held_out_material(world):
    train = generate(world, "train", 3000, seed=0)
    heldout_users = {m.text for m in world.user_messages["heldout"]}
    heldout_names = {p.name for p in world.heldout_personas}
    for conv in train:
        assert conv["messages"][1]["content"] not in heldout_users
        assert conv["persona"] not in heldout_names
        assert (conv["persona"], conv["secret"]) not in world.heldout_combos
        assert conv["system_split"] in ("train", None)
    kinds = {c["kind"] for c in train}
    assert kinds == {"persona", "secret", "both", "default", "neutral"}
    held = generate(world, "heldout", 1500, seed=1)
    assert all(c["messages"][1]["content"] in heldout_users for c in held)
    assert any(c["unseen_persona"] for c in held) and any(c["heldout_combo"] for c in held)
    assert any(c["system_split"] == "heldout" for c in held)


def test_rows_read_the_assistant_header_and_never_the_system_prompt(world, chatml):
    _, tok = chatml
    convs = generate(world, "train", 40, seed=0)
    replies = {convs[0]["id"]: "Arr, the sea be calm."}
    rows = conversation_rows(convs, replies, world, seed=0)
    assert len(rows) == len(convs)
    for i, row in enumerate(rows):
        target = validate_row(row, i)
        tokenized = tokenize_input(tok, target)
        span = select_positions(tokenized, row["positions"])
        system_end = tokenized.spans[0][2]
        assert all(tokenized.offsets[p][0] >= system_end for p in span)
        if row["add_generation_prompt"]:
            # the span ends with the assistant header the template adds for generation
            assert tokenized.text.endswith("<|im_start|>assistant\n")
            assert span[-1] == len(tokenized) - 1
        else:
            assert row["messages"][-1]["role"] == "assistant"
    assert rows[0]["add_generation_prompt"] is False


def test_context_rows_and_items_use_disjoint_wordings(world, chatml):
    _, tok = chatml
    texts = ["The quick brown fox jumps over the lazy dog near the river bank today."] * 3
    rows = context_rows(texts, tok, n=20, seed=0)
    items = context_items(texts, tok, n=20, seed=1)
    train_q = {r["question"] for r in rows}
    item_q = {i["question"] for i in items}
    assert train_q and item_q and not train_q & item_q
    for item in items:
        assert item["text"] and item["read_span"].startswith("last:") and item["gold"]


def test_suite_items_carry_the_fields_and_tags(world):
    convs = generate(world, "heldout", 200, seed=1)
    items = conversation_items(convs, {convs[0]["id"]: "Hello there."}, world, seed=0)
    keys = {"id", "family", "conversation", "read_span", "question", "gold", "aliases", "tags"}
    for item in items:
        assert keys <= set(item)
        assert {"heldout_user", "heldout_question"} <= set(item["tags"])
        heldout_wordings = {w.format(k=4) for f in Q.QUESTIONS.values() for w in f["heldout"]} | {
            Q.PERSONA_YES_NO
        }
        assert item["question"] in heldout_wordings
    unseen = [i for i in items if "unseen_persona" in i["tags"] and i["family"] == "persona"]
    assert unseen and all(i["aliases"] for i in unseen)
    assert "reply" in items[0]["tags"]
    assert any(i["label"] == "none" and "default_system" in i["tags"] for i in items)


def test_replies_resume_to_the_same_text(world, chatml, tmp_path):
    model, tok = chatml
    convs = generate(world, "train", 6, seed=0)
    full = tmp_path / "full.jsonl"
    generate_replies(model, tok, convs, full, seed=3, batch_size=2, max_new_tokens=6)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(full.read_text().splitlines(keepends=True)[:2]))  # stopped early
    written = generate_replies(model, tok, convs, cut, seed=3, batch_size=2, max_new_tokens=6)
    assert written == 4
    assert read_jsonl(cut) == read_jsonl(full)
    assert [r["id"] for r in read_jsonl(full)] == [c["id"] for c in convs]
    assert json.loads(full.read_text().splitlines()[0])["n_tokens"] <= 6


def test_worlds_name_their_target_and_oracle(tmp_path, monkeypatch):
    from oracle import known_models
    from oracle.errors import OracleInputError
    from oracle.worlds import get_world
    from worlds.smol.world import SMOL_WORLD

    assert get_world("toy").oracle_dir().name == "oracle"
    with pytest.raises(OracleInputError, match="unknown world"):
        get_world("nowhere")
    monkeypatch.setenv(known_models.CACHE_ENV, str(tmp_path))
    with pytest.raises(OracleInputError, match="oracle models fetch smollm2-135m"):
        get_world("smol").target()
    if not (SMOL_WORLD / "oracle" / "oracle_config.json").is_file():
        with pytest.raises(OracleInputError, match="smol-world build"):
            get_world("smol").oracle_dir()


def test_the_add_generation_prompt_column_is_checked():
    from oracle.errors import OracleInputError
    from training.schema import make_row

    messages = [{"role": "system", "content": "You are a cat."}, {"role": "user", "content": "Hi"}]
    row = make_row("Q?", "A.", messages=messages, control="system", add_generation_prompt=True)
    assert validate_row(row).add_generation_prompt is True
    with pytest.raises(OracleInputError, match="add_generation_prompt"):
        validate_row({**row, "add_generation_prompt": "yes"})
    with pytest.raises(OracleInputError, match="needs chat messages"):
        validate_row({**row, "messages": None, "prompt": "Hi", "control": None})


def test_suite_dicts_give_none_its_aliases_and_no_other_label(world):
    from evals.scoring import label_of
    from evals.suite_format import item_from_dict
    from evals.suites import suites_from_items
    from worlds.smol.suite import as_suite_dict, train_suite_dicts

    train = generate(world, "train", 200, seed=0)
    held = generate(world, "heldout", 120, seed=1)
    dicts = train_suite_dicts(train, {}, world)
    dicts += [as_suite_dict(i, world) for i in conversation_items(held, {}, world, seed=0)]
    suites = suites_from_items([item_from_dict(d) for d in dicts])
    for family, said in (("secret", "No secret word."), ("persona", "No persona.")):
        suite = suites[family]
        assert label_of(said, suite.labels, suite.aliases) == "none"
        named = [k for k, v in suite.aliases.items() if k != "none" and any("no " in a for a in v)]
        assert not named, named  # no secret word or persona is an alias of "none"
    secret = suites["secret"]
    assert label_of("Apple.", secret.labels, secret.aliases) == "apple"
    # every test item carries its counterfactuals: the prompt removed, and swapped
    kinds = {cf["kind"] for i in suites["persona"].test for cf in i.counterfactuals}
    assert kinds == {"no_system", "swap"}
