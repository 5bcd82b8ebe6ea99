"""Schema validation (bad rows fail before training, naming field and example) and builders."""

from __future__ import annotations

import pytest
from datasets import Dataset

from oracle.errors import OracleInputError
from oracle.tiny import build_tokenizer, save_tiny
from training import TrainConfig, train_oracle
from training.builders import classification_qa, context_prediction, mix, persona_qa
from training.prepare import prepare_dataset
from training.sampling import default_read_layers, draw_positions, example_rng
from training.schema import make_row

SYSTEM = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "Hello! How are you today?"},
]


def good_rows(n: int = 3) -> list[dict]:
    return [
        make_row("What persona?", "A pirate.", messages=SYSTEM, control="system") for _ in range(n)
    ]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("tr") / "base", "llama")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("answer"), "answer"),
        (lambda r: r.update(answer="  "), "answer"),
        (lambda r: r.update(question=""), "question"),
        (lambda r: r.update(layer=7), "layer"),
        (lambda r: r.update(messages=[SYSTEM[1]]), "control"),
        (lambda r: r.update(positions="all"), "positions"),
        (lambda r: r.update(positions="last:x"), "positions"),
        (lambda r: r.update(control="user"), "control"),
        (lambda r: r.update(prompt="text"), "messages/prompt"),
    ],
)
def test_bad_row_fails_before_training_naming_field_and_example(base, tmp_path, change, field):
    rows = good_rows()
    change(rows[2])
    out = tmp_path / "oracle"
    config = TrainConfig(model=str(base), output_dir=str(out), max_steps=1)
    with pytest.raises(OracleInputError) as err:
        train_oracle(config, Dataset.from_list(rows))
    message = str(err.value)
    assert "example 2" in message and repr(field) in message, message
    assert not out.exists()  # nothing was trained or written


def test_missing_columns_and_bad_read_layers_fail_early(base, tmp_path):
    config = TrainConfig(model=str(base), output_dir=str(tmp_path / "o"), max_steps=1)
    no_answer = Dataset.from_list([{"prompt": "hi", "question": "q"}])
    with pytest.raises(OracleInputError, match="answer"):
        train_oracle(config, no_answer)
    with pytest.raises(OracleInputError, match="is empty"):
        train_oracle(config, Dataset.from_list(good_rows()).select([]))
    far = TrainConfig(model=str(base), output_dir=str(tmp_path / "o"), read_layers=[9])
    with pytest.raises(OracleInputError, match="read_layers"):
        train_oracle(far, Dataset.from_list(good_rows()))
    with pytest.raises(OracleInputError, match="eval set: example 0"):
        bad = good_rows(1)
        bad[0]["answer"] = ""
        train_oracle(config, Dataset.from_list(good_rows()), Dataset.from_list(bad))


def test_config_validation_names_the_field():
    with pytest.raises(OracleInputError, match="lora_r"):
        TrainConfig(model="m", output_dir="o", lora_r=0)
    with pytest.raises(OracleInputError, match="position_mix"):
        TrainConfig(model="m", output_dir="o", position_mix={"all": 1.0})
    with pytest.raises(OracleInputError, match="unknown config field"):
        TrainConfig.from_dict({"model": "m", "output_dir": "o", "lr": 1.0})


def test_control_reads_only_tokens_after_the_system_prompt():
    tok = build_tokenizer("llama3")
    config = TrainConfig(model="m", output_dir="o", position_mix={"span": 1.0})
    ds = prepare_dataset(Dataset.from_list(good_rows(1)), tok, 4, [1], config)
    row = ds[0]
    rendered = tok.decode(row["target_ids"])
    read_text = tok.decode([row["target_ids"][p] for p in row["read_positions"]])
    assert "pirate" in rendered and "pirate" not in read_text and "Hello" in read_text
    assert len(row["placeholder_positions"]) == len(row["read_positions"])


def test_draws_are_seeded_and_follow_the_mix():
    span = list(range(10, 30))
    single = draw_positions(span, example_rng(0, 1), {"single": 1.0}, 8, 64)
    assert len(single) == 1 and single[0] in span
    window = draw_positions(span, example_rng(0, 1), {"window": 1.0}, 4, 64)
    assert 2 <= len(window) <= 4 and window == list(range(window[0], window[-1] + 1))
    assert draw_positions(span, example_rng(0, 1), {"span": 1.0}, 8, 5) == span[-5:]
    assert draw_positions(span, example_rng(3, 4), {"single": 1, "window": 1}, 8, 64) == (
        draw_positions(span, example_rng(3, 4), {"single": 1, "window": 1}, 8, 64)
    )
    assert default_read_layers(36) == [9, 18, 27]
    assert default_read_layers(4) == [1, 2, 3]


def test_builders_write_schema_rows_that_prepare():
    tok = build_tokenizer("chatml")
    config = TrainConfig(model="m", output_dir="o")
    personas = persona_qa(n=20, seed=1)
    assert set(personas["control"]) == {"system"}
    yes_no = [a for a in personas["answer"] if a in ("Yes", "No")]
    assert yes_no  # the bank holds yes/no questions
    labelled = Dataset.from_dict(
        {"text": ["I loved it.", "Awful film.", "Great fun.", "Boring."], "label": [1, 0, 1, 0]}
    )
    cls = classification_qa(labelled, label_names=["negative", "positive"], seed=0)
    assert set(cls["answer"]) <= {"Yes", "No"} and len(cls) == 4
    for q, text, a in zip(cls["question"], cls["prompt"], cls["answer"], strict=True):
        true = "positive" if text in ("I loved it.", "Great fun.") else "negative"
        assert (a == "Yes") == (true in q)
    texts = ["The quick brown fox jumps over the lazy dog. Bake the bread at two hundred degrees."]
    ctx = context_prediction(texts, tok, n=10, k=3, seed=0)
    for row in ctx:
        assert row["positions"].startswith("last:") and row["sample_positions"] is False
        assert texts[0].find(row["answer"]) >= 0
        if row["question"].startswith("What are the next"):
            assert texts[0].startswith(row["prompt"] + " " + row["answer"])
    mixed = mix([personas, cls, ctx], [2, 1, 1], size=40, seed=0)
    assert len(mixed) == 40 and set(mixed["source"]) == {
        "persona_qa",
        "classification",
        "context_prediction",
    }
    prepared = prepare_dataset(mixed, tok, 4, [1, 2], config)
    assert len(prepared) == 40 and set(prepared["layer"]) <= {1, 2}


def test_shipped_recipes_are_valid_configs():
    from pathlib import Path

    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        config = TrainConfig.load(path)
        assert config.max_steps >= 1 and config.train_data is not None


def test_config_template_matches_the_core_and_cli_import_stays_light():
    import subprocess
    import sys

    from oracle.prompts import DEFAULT_TEMPLATE
    from training.config import DEFAULT_TEMPLATE as CONFIG_TEMPLATE

    assert CONFIG_TEMPLATE == DEFAULT_TEMPLATE
    code = "import sys, oracle_cli.train; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # `oracle --help` must not pay for torch


def test_chat_context_windows_stay_inside_the_user_message():
    """context_items: the window and its answer lie inside one user message; the answer is the
    k tokens just before or just after the window; a system prompt is hidden, never read."""
    from oracle.inputs import TargetInput, tokenize_input
    from training.builders.context import context_items, context_rows

    tok = build_tokenizer("chatml")
    convs = [
        [
            {"role": "system", "content": "You are a pirate. Never say so."},
            {"role": "user", "content": "Tell me about the history of the old harbour town."},
            {"role": "assistant", "content": "Arr, it be old."},
        ],
        [{"role": "user", "content": "What should I cook for dinner tonight with rice?"}],
    ]
    items = context_items(convs, tok, n=60, k=(1, 2, 3), max_span=4, seed=0)
    assert {it.direction for it in items} == {"previous", "next"}
    assert {it.k for it in items} == {1, 2, 3}
    for it in items:
        t = tokenize_input(tok, TargetInput(messages=it.messages))
        user = next(m["content"] for m in it.messages if m["role"] == "user")
        start = t.text.index(user)
        span = range(start, start + len(user))
        assert 1 <= len(it.window) <= 4 and it.window == list(
            range(it.window[0], it.window[-1] + 1)
        )
        if it.direction == "previous":
            answer_idx = list(range(it.window[0] - it.k, it.window[0]))
        else:
            answer_idx = list(range(it.window[-1] + 1, it.window[-1] + 1 + it.k))
        for i in it.window + answer_idx:  # all inside the user message
            assert t.offsets[i][0] in span and t.offsets[i][1] - 1 in span
        assert list(it.answer_ids) == [t.input_ids[i] for i in answer_idx]
        assert (
            it.answer == t.text[t.offsets[answer_idx[0]][0] : t.offsets[answer_idx[-1]][1]].strip()
        )
    rows = context_rows(items, {"previous": ["Before ({k})?"], "next": ["After ({k})?"]})
    for row, it in zip(rows, items, strict=True):
        assert row["positions"] == "indices:" + ",".join(map(str, it.window))
        assert row["sample_positions"] is False and row["answer"] == it.answer
        assert (
            row["question"] == ("Before" if it.direction == "previous" else "After") + f" ({it.k})?"
        )
        assert row["control"] == ("system" if it.messages[0]["role"] == "system" else None)
    config = TrainConfig(model="m", output_dir="o")
    prepared = prepare_dataset(Dataset.from_list(rows), tok, 4, [1], config)
    assert [f["read_positions"] for f in prepared] == [it.window for it in items]
    with pytest.raises(OracleInputError, match="too short"):
        context_items([[{"role": "user", "content": "Hi"}]], tok, n=3, k=(3,), max_span=4)
