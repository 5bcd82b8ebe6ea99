"""No caller outside ``oracle/engines/`` reaches a transformers model through an engine: what
serving, audit, evals and the command line need of the target (its replies, steered captures,
the black box's prompt and continuation, the training-free readout) is an engine method.
Checked on the source, so that a new caller cannot slip past it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
PACKAGES = ("oracle", "training", "serving", "evals", "audit", "worlds", "oracle_cli")
# the engine's own ways to the transformers copy: only oracle/engines may use them
REACH = {"transformers_oracle"}


def reaches(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(REPO)}:{node.lineno} .{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in REACH
    ]


def sources() -> list[Path]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]
    return [p for p in files if "engines" not in p.relative_to(REPO).parts[:2]]


def test_no_caller_outside_the_engines_reaches_the_transformers_model():
    found = [hit for path in sources() for hit in reaches(path)]
    assert not found, "reach the target through an engine method instead:\n" + "\n".join(found)


def test_the_check_sees_a_reach(tmp_path):
    """The scan is not vacuous: it finds the call it forbids, and scans the packages."""
    bad = REPO / "evals" / "_boundary_probe.py"
    assert len(sources()) > 100
    try:
        bad.write_text("def f(engine):\n    return engine.transformers_oracle().target\n")
        assert reaches(bad) == ["evals/_boundary_probe.py:2 .transformers_oracle"]
    finally:
        bad.unlink()


@pytest.mark.parametrize("family", ["llama"])
def test_the_engine_methods_equal_what_they_replace(family, tmp_path):
    """The engine's target methods give what the transformers copy gives directly."""
    import torch

    from oracle.engines.hf import HFEngine
    from oracle.generation import generate_texts
    from tests.helpers import make_oracle_dir

    base, oracle = make_oracle_dir(tmp_path, family, read_layers=(1,))
    engine = HFEngine.load(str(base), str(oracle), dtype="float32", device="cpu")
    ao = engine.oracle
    rows = engine.user_turn_rows(["Hello there.", "Tell me a story."])
    assert rows[0] == ao.tokenizer.encode(
        ao.tokenizer.apply_chat_template(
            [{"role": "user", "content": "Hello there."}], tokenize=False,
            add_generation_prompt=True,
        ),
        add_special_tokens=False,
    )  # fmt: skip
    texts, p_yes = engine.continue_rows(rows, 4, yes_no=True)
    with ao.adapter_disabled():
        assert texts == generate_texts(ao.target, ao.tokenizer, rows, 4)
    assert all(p is not None and 0.0 <= p <= 1.0 for p in p_yes)
    acts = [torch.randn(3, engine.d_model), torch.randn(2, engine.d_model)]
    questions = ["Is the assistant a pirate?"] * 2
    base_texts, _ = engine.answer_base(acts, questions, 1, 3, 2)
    with ao.adapter_disabled():
        assert base_texts == ao.answer(acts, questions, 1, max_new_tokens=3)
    assert base_texts != ao.answer(acts, questions, 1, max_new_tokens=3)  # the adapter matters
