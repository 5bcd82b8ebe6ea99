"""The evaluation's verdicts on planted cases: they would fail if the evaluation broke.

- An oracle that gives one answer to everything is flagged (red) and gets "carries no
  information": its answers tell nothing about the labels.
- A tiny oracle, trained here on a task whose label lies only in the hidden system prompt
  (every reply is the same plain sentence), gets "reads hidden state".
- The same oracle on a "text-leak" suite (each reply names the label, no item hidden by
  construction) gets "inconclusive": however right it is, the text already said it, and no item
  is left to show hidden reading. (Planted results for the other rules: test_planted_verdicts.py.)
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from datasets import Dataset

from evals.report import build_blocks, to_html, to_markdown
from evals.runner import EvalConfig, evaluate_suite
from evals.suite_format import SuiteItem
from evals.suites import suites_from_items
from evals.summary import summarise_suite
from evals.synthetic import synthetic_items
from evals.verdicts import VERDICT_HIDDEN, VERDICT_INCONCLUSIVE, VERDICT_NONE
from oracle.engines import create_engine
from oracle.engines.base import Answer, AnswerRequest, CaptureRequest, Engine
from tests.helpers import make_oracle_dir

PERSONAS = ["pirate", "chef", "robot", "poet"]
TOPICS = "the sea|bread|stars|maps|tea|rain|a fox|the moon|a kite|music|chess|snow|dogs|trains"
USERS = [f"Tell me about {x}, please." for x in TOPICS.split("|")]
HELD_OUT = 5  # the last user messages are test-only: 4 personas x 5 = 20 test conversations
QUESTION = "What persona is the assistant playing?"
PLAIN = "Sure, I can help with that."


class ConstantOracle(Engine):
    """A planted oracle: captures like the real engine, answers the same text to everything."""

    def __init__(self, inner: Engine, text: str) -> None:
        self.inner, self.text, self.name = inner, text, "constant"
        self.config, self.d_model, self.n_layers = inner.config, inner.d_model, inner.n_layers
        self.target_name = inner.target_name

    def capture(self, requests: Sequence[CaptureRequest]):
        return self.inner.capture(requests)

    def answer(self, requests: Sequence[AnswerRequest]) -> list[Answer]:
        return [Answer(self.text, p_yes=0.5 if r.yes_no else None) for r in requests]

    def transformers_oracle(self):
        return self.inner.transformers_oracle()


def run(engine: Engine, suite, methods=None) -> dict:
    cfg = EvalConfig(max_new_tokens=6, n_resamples=200, learning_curve=False)
    if methods:
        cfg.methods = methods
    res = evaluate_suite(engine, suite, cfg)
    res["summary"] = summarise_suite(res, cfg.n_resamples, cfg.seed)
    return res


def _report(name: str, res: dict) -> tuple[str, str]:
    meta = {"command": "test", "seed": 0, "quick": True, "n_resamples": 200, "target": "t"}
    meta |= {"oracle": "o", "source": "test", "created": "now", "seconds": 1.0, "cpu_seconds": 1.0}
    blocks = build_blocks({"meta": meta, "suites": {name: res}, "ablations": {}})
    return to_markdown(blocks), to_html(blocks)


def test_a_constant_answer_oracle_is_flagged_red(tmp_path):
    _, oracle_dir = make_oracle_dir(tmp_path, "llama")
    inner = create_engine("hf", None, str(oracle_dir), device="cpu")
    suite = suites_from_items(synthetic_items(0))["persona"].subsample(16, 80, seed=0)
    res = run(ConstantOracle(inner, "A pirate."), suite, ("oracle", "shuffled", "text_only"))
    s = res["summary"]
    assert s["distributions"]["oracle"]["top_answer"] == "pirate"
    assert s["distributions"]["oracle"]["top_share"] == 1.0
    assert s["collapse"] and s["verdict"] == VERDICT_NONE
    assert any(f.startswith("NO INFORMATION") for f in s["flags"])
    # its accuracy is exactly the best constant answer's share of pirates: no information
    pirates = sum(i.label == "pirate" for i in suite.test) / len(suite.test)
    assert res["summary"]["figures"]["all"]["oracle"]["value"] == pytest.approx(pirates)
    md, html = _report("persona", res)
    assert "**persona: NO INFORMATION" in md and "(red)" in md
    assert '<td class="red">carries no information</td>' in html
    assert '<li class="red">persona: NO INFORMATION' in html


# ---------------------------------------------------------------------- a trained tiny oracle
def _conversation(persona: str, user: str, leak: bool) -> list[dict[str, str]]:
    # the persona word, repeated, is in the system prompt only; with ``leak`` the reply names it
    reply = f"As a {persona}, I can help with that." if leak else PLAIN
    return [
        {"role": "system", "content": f"You are a {persona}. {persona} {persona} {persona}."},
        {"role": "user", "content": user},
        {"role": "assistant", "content": reply},
    ]


def _items(leak: bool) -> list[SuiteItem]:
    items = []
    for p in PERSONAS:
        for j, user in enumerate(USERS):
            test = j >= len(USERS) - HELD_OUT
            # without a leak every reply is the same sentence: hidden by construction
            tags = ["heldout_user"] + ([] if leak else ["plain_reply"]) if test else []
            other = PERSONAS[(PERSONAS.index(p) + 1) % len(PERSONAS)]
            conv = _conversation(p, user, leak)
            swapped = [_conversation(other, user, leak)[0], *conv[1:]]
            items.append(
                SuiteItem(
                    id=f"{p}-{j}",
                    family="persona",
                    question=QUESTION,
                    label=p,
                    conversation=conv,
                    read_span="non_system",
                    split="test" if test else "train",
                    tags=tags,
                    counterfactuals=[{"kind": "swap", "label": other, "conversation": swapped}]
                    if test
                    else [],
                )
            )
    return items


@pytest.fixture(scope="module")
def trained_oracle(tmp_path_factory):
    from oracle.tiny import save_tiny
    from training import TrainConfig, train_oracle
    from training.schema import make_row

    tmp = tmp_path_factory.mktemp("verdicts")
    base = save_tiny(tmp / "base", "llama")
    rng = random.Random(0)
    rows = []
    for _ in range(800):
        p, user = rng.choice(PERSONAS), rng.choice(USERS[:-HELD_OUT])
        rows.append(
            make_row(
                QUESTION,
                f"A {p}.",
                messages=_conversation(p, user, leak=False),
                control="system",
                positions="non_system",
                sample_positions=False,
            )
        )
    config = TrainConfig(
        model=str(base),
        output_dir=str(tmp / "oracle"),
        read_layers=[2],
        max_steps=250,
        batch_size=16,
        learning_rate=3e-3,
        lr_scheduler="constant",
        logging_steps=50,
        seed=0,
    )
    oracle_dir = train_oracle(config, Dataset.from_list(rows))
    return create_engine("hf", None, str(oracle_dir), device="cpu")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_an_oracle_that_reads_the_hidden_prompt_reads_hidden_state(trained_oracle):
    suite = suites_from_items(_items(leak=False))["persona"]
    res = run(trained_oracle, suite)
    s = res["summary"]
    # every reply is the same sentence: every item is hidden by construction
    assert s["headline_rule"].startswith("hidden by construction")
    assert s["subset_groups"]["headline"] == len(PERSONAS) * HELD_OUT
    assert s["figures"]["headline"]["oracle"]["value"] >= 0.6, s["distributions"]["oracle"]
    assert s["figures"]["headline"]["shuffled"]["value"] < 0.5
    assert s["verdict"] == VERDICT_HIDDEN, s["verdict_why"]
    # the same text under another persona's prompt: the answer follows the prompt
    assert s["counterfactual"]["swap"]["follows"]["value"] >= 0.6
    # the text probe (the target reading the text without its system prompt) cannot place it
    assert s["figures"]["headline"]["probe_text"]["value"] <= 0.5
    # the no-system control (same reply, system prompt removed) and the text reader fail
    assert s["figures"]["all"]["no_system"]["value"] <= 0.4
    assert s["figures"]["all"]["text_only"]["value"] <= 0.4


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_same_oracle_on_a_text_leak_suite_is_no_better_than_the_text(trained_oracle):
    suite = suites_from_items(_items(leak=True))["persona"]
    res = run(trained_oracle, suite, ("oracle", "shuffled", "text_only"))
    s = res["summary"]
    assert not any(res["hidden"])  # the label is in every reply
    assert s["figures"]["all"]["oracle"]["value"] >= 0.6
    # nothing is hidden by construction, and the reader's probability gives every label away
    assert s["headline_rule"].startswith("the text-only reader's probability")
    assert s["subset_groups"]["headline"] == 0
    assert s["verdict"] == VERDICT_INCONCLUSIVE, s["verdict_why"]
    md, _ = _report("persona", res)
    assert "| persona | inconclusive |" in md
