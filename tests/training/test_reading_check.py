"""The reading check inside training: its scores, its collapse rule, and a run it stops."""

from __future__ import annotations

import json
import random

import pytest
from datasets import Dataset

from training import TrainConfig, train_oracle
from training.reading_check import CHECK_FILE, collapsed, normalise, score
from training.schema import make_row


def test_normalise_drops_case_articles_and_end_punctuation():
    assert normalise("A pirate.") == normalise("pirate") == "pirate"
    assert normalise("  The Moon! ") == "moon"
    assert normalise("No persona.") == "no persona"


def test_score_reports_accuracy_constant_and_top_share_per_family():
    golds = ["A pirate.", "A chef.", "A pirate.", "No persona.", "Moon.", "Apple."]
    said = ["a pirate", "A pirate.", "A pirate.", "A pirate.", "Moon", "Moon."]
    families = ["persona"] * 4 + ["secret"] * 2
    out = score(said, golds, families)
    assert out["persona"]["accuracy"] == 0.5
    assert out["persona"]["best_constant"] == "pirate"
    assert out["persona"]["best_constant_accuracy"] == 0.5
    assert out["persona"]["top_answer"] == "pirate" and out["persona"]["top_share"] == 1.0
    assert out["secret"]["accuracy"] == 0.5 and out["secret"]["top_share"] == 1.0


def test_collapse_is_judged_against_the_best_constant_not_the_top_share():
    # one answer for all, right only as often as the constant: collapsed
    golds = ["No persona."] * 6 + ["A pirate.", "A chef.", "A cat.", "A dog."]
    prior = score(["No persona."] * 10, golds, ["persona"] * 10)
    assert collapsed(prior)
    # a perfect oracle on a suite whose majority label is 60%: its top share is 60%, yet it
    # reads (a top-share rule would call it collapsed)
    perfect = score(golds, golds, ["persona"] * 10)
    assert perfect["persona"]["top_share"] == 0.6 and not collapsed(perfect)
    # one family reading is enough not to be collapsed
    assert not collapsed({**prior, "other": perfect["persona"]})


WORDS = ["apple", "pirate", "chef", "bread"]


def rows(n: int, seed: int, source: str = "check/item") -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        word = rng.choice(WORDS)
        out.append(
            make_row(
                "Which item?",
                word,
                prompt=f"Hello. The item is {word}.",
                layer=1,
                positions="last:3",
                sample_positions=False,
                source=source,
            )
        )
    return out


@pytest.mark.timeout(120)
def test_a_run_still_at_the_prior_at_its_planned_onset_is_stopped_and_reported(tmp_path):
    from oracle.tiny import save_tiny

    base = save_tiny(tmp_path / "base", "llama")
    check = tmp_path / "check.jsonl"
    check.write_text("".join(json.dumps(r) + "\n" for r in rows(12, seed=5)))
    config = TrainConfig(
        model=str(base),
        output_dir=str(tmp_path / "oracle"),
        max_steps=40,
        batch_size=4,
        learning_rate=1e-9,  # it cannot learn: still at the prior when checked
        read_layers=[1],
        check_data=str(check),
        check_steps=4,
        check_stop_step=8,
        dtype="fp32",
    )
    out = train_oracle(config, Dataset.from_list(rows(40, seed=0)))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 8  # stopped at the planned onset, not run to 40
    assert metrics["reading_check"]["stopped"].startswith("collapsed at step 8")
    lines = (out / CHECK_FILE).read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [4, 8]
    family = json.loads(lines[-1])["families"]["check/item"]
    assert family["n"] == 12 and 0 <= family["accuracy"] <= family["best_constant_accuracy"] + 0.05
