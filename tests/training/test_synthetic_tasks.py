"""The oracle learns a fact that only the injected activations carry, and resumes exactly.

Synthetic task: the target reads "... The item is {word}." for one of N words; the oracle is
asked "Which item?" and its prompt never names the word, so a right answer must come from the
activations. Shuffling activations across examples must bring accuracy down to chance.
"""

from __future__ import annotations

import json
import random

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file

from oracle.oracle import ActivationOracle
from oracle.tiny import save_tiny
from training import TrainConfig, train_oracle
from training.schema import make_row

ITEMS = ["apple", "pirate", "chef", "bread", "stars", "fox", "dog", "sea"]
FILLERS = [
    "Hello!",
    "The weather is calm.",
    "Tell me about the stars.",
    "Bake the bread.",
    "How are you today?",
    "Arr matey.",
    "The quick brown fox.",
    "What is the weather like?",
]
QUESTION = "Which item?"


def item_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        word, filler = rng.choice(ITEMS), rng.choice(FILLERS)
        rows.append(
            make_row(
                QUESTION,
                word,
                prompt=f"{filler} The item is {word}.",
                layer=1,
                positions="last:3",
                sample_positions=False,
            )
        )
    return rows


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_oracle_reads_the_item_only_from_activations(tmp_path):
    base = save_tiny(tmp_path / "base", "llama")
    config = TrainConfig(
        model=str(base),
        output_dir=str(tmp_path / "oracle"),
        max_steps=150,
        batch_size=16,
        learning_rate=3e-3,
        lr_scheduler="constant",
        logging_steps=50,
        seed=0,
    )
    oracle_dir = train_oracle(config, Dataset.from_list(item_rows(400, seed=0)))

    ao = ActivationOracle.load(oracle=oracle_dir, device="cpu")
    test = item_rows(64, seed=123)
    caps = ao.capture([r["prompt"] for r in test], layers=[1], positions="last:3")
    acts = [c.activations[0] for c in caps]
    answers = [a.strip() for a in ao.answer(acts, [QUESTION] * len(test), layer=1)]
    truth = [r["answer"] for r in test]
    accuracy = sum(a == t for a, t in zip(answers, truth, strict=True)) / len(test)
    assert accuracy >= 0.9, (accuracy, answers[:10])

    perm = list(range(len(test)))
    random.Random(1).shuffle(perm)
    shuffled = [a.strip() for a in ao.answer([acts[i] for i in perm], [QUESTION] * len(test), 1)]
    chance_acc = sum(a == t for a, t in zip(shuffled, truth, strict=True)) / len(test)
    follows_source = sum(a == truth[i] for a, i in zip(shuffled, perm, strict=True)) / len(test)
    # Chance is 1/8 (a shuffle keeps some same-word pairs); the answers follow the activations.
    assert chance_acc <= 0.35, chance_acc
    assert follows_source >= 0.9, follows_source

    saved = json.loads((oracle_dir / "metrics.json").read_text())
    assert saved["steps"] == 150 and saved["world_size"] == 1
    assert json.loads((oracle_dir / "training_config.json").read_text())["max_steps"] == 150


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_resume_from_checkpoint_ends_at_the_same_adapter(tmp_path):
    base = save_tiny(tmp_path / "base", "llama")
    rows = Dataset.from_list(item_rows(40, seed=0))
    common = dict(
        model=str(base),
        max_steps=6,
        batch_size=4,
        grad_accum=2,
        learning_rate=1e-3,
        warmup_ratio=0.2,
        save_steps=3,
        logging_steps=1,
    )
    full = train_oracle(TrainConfig(output_dir=str(tmp_path / "full"), **common), rows)
    checkpoint = tmp_path / "full" / "ckpt" / "checkpoint-3"
    assert checkpoint.is_dir()
    resumed = train_oracle(
        TrainConfig(output_dir=str(tmp_path / "resumed"), resume=str(checkpoint), **common), rows
    )
    history = json.loads((resumed / "metrics.json").read_text())["history"]
    logged_steps = [h["step"] for h in history if "loss" in h]
    assert logged_steps and min(logged_steps) == 4  # it continued, it did not start over
    a = load_file(str(full / "adapter_model.safetensors"))
    b = load_file(str(resumed / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    at_3 = load_file(str(checkpoint / "oracle" / "adapter_model.safetensors"))
    assert any(not torch.equal(a[k], at_3[k]) for k in a)  # steps 4-6 changed the adapter
    for key in a:
        torch.testing.assert_close(a[key], b[key])
