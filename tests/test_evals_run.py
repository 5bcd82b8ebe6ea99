"""End-to-end runs of the evaluation suite on tiny random models (and the toy world if shipped)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from evals.baselines import black_box, training_free
from evals.evaluate import RunSpec, run_eval
from evals.runner import BASELINE_NAMES, EvalConfig, evaluate_suite
from evals.suites import synthetic_suites
from oracle.defaults import TOY_WORLD
from oracle.engines import create_engine
from oracle.errors import OracleInputError
from tests.helpers import make_oracle_dir

ALL_METHODS = {"oracle", *BASELINE_NAMES, "shuffled", "no_system", "zeros", "noise"}


@pytest.fixture(scope="module")
def tiny_oracle(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("evals"), "llama")


@pytest.fixture(scope="module")
def engine(tiny_oracle):
    _, oracle_dir = tiny_oracle
    return create_engine("hf", None, str(oracle_dir), device="cpu")


def test_every_method_scores_every_test_item(engine):
    suite = synthetic_suites(0)["persona"].subsample(6, 40, seed=0)
    res = evaluate_suite(engine, suite, EvalConfig(max_new_tokens=3, n_resamples=100))
    assert set(res["methods"]) == ALL_METHODS
    for m in res["methods"].values():
        assert len(m["predictions"]) == len(m["answers"]) == 6
        assert 0 <= m["all"]["lo"] <= m["all"]["value"] <= m["all"]["hi"] <= 1
        assert sum(s["n"] for s in m["by_split"].values()) == 6
    assert set(res["oracle_minus"]) == ALL_METHODS - {"oracle"}
    answers = {k: v["answers"] for k, v in res["methods"].items()}
    # the adapter matters: the base model given the same injection answers otherwise
    assert answers["training_free"] != answers["oracle"]
    # the input matters: noise and zero vectors change what the oracle says
    assert answers["noise"] != answers["oracle"] or answers["zeros"] != answers["oracle"]
    # activations of a causal model carry the system prompt: a probe reads it, even untrained
    assert res["methods"]["linear_probe"]["all"]["value"] > res["chance"]


def test_zero_vectors_carry_no_item_information(engine):
    ao = engine.oracle
    gen = torch.Generator().manual_seed(0)
    acts = [torch.randn(3, engine.d_model, generator=gen) * 5 for _ in range(2)]
    q = "What persona is the assistant playing?"
    zero_p = ao.p_yes([torch.zeros_like(a) for a in acts], [q, q])
    acts_p = ao.p_yes(acts, [q, q])
    assert zero_p[0] == pytest.approx(zero_p[1], abs=1e-6)  # two items, one answer
    assert acts_p[0] != pytest.approx(acts_p[1], abs=1e-6)  # their activations differ
    off = training_free(ao, [torch.zeros_like(acts[0])], q, max_new_tokens=4)
    assert off != ao.answer([torch.zeros_like(acts[0])], [q], max_new_tokens=4)  # adapter off


def test_black_box_needs_a_chat_template(tmp_path):
    _, oracle_dir = make_oracle_dir(tmp_path, "gpt2")
    eng = create_engine("hf", None, str(oracle_dir), device="cpu")
    with pytest.raises(OracleInputError, match="chat template"):
        black_box(eng.oracle, [[{"role": "user", "content": "hi"}]], "Who?")


def test_run_eval_writes_json_markdown_and_html(tiny_oracle, tmp_path):
    _, oracle_dir = tiny_oracle
    spec = RunSpec(
        suites=["persona", "secret"],
        oracle=str(oracle_dir),
        out_dir=str(tmp_path / "out"),
        quick=True,
        synthetic=True,
        device="cpu",
        command="oracle eval --synthetic --quick",
        eval=EvalConfig(max_new_tokens=3, n_resamples=100),
    )
    results, paths = run_eval(spec)
    saved = json.loads(paths["json"].read_text())
    assert set(saved["suites"]) == {"persona", "secret"}
    assert saved["suites"]["persona"]["n_test"] == 24
    assert [r["name"] for r in saved["ablations"]["positions"]["rows"]] == [
        "last:1",
        "last:4",
        "last:16",
        "non_system",
    ]
    md = paths["markdown"].read_text()
    assert "oracle eval --synthetic --quick" in md and "| linear_probe | baseline |" in md
    assert "<svg" in paths["html"].read_text()
    assert str(tmp_path) not in json.dumps(saved["meta"])  # no machine paths in the report
    # the ablations alone, merged into the same results
    from dataclasses import replace

    merged, _ = run_eval(replace(spec, parts="ablations", command="oracle eval --ablations-only"))
    assert set(merged["suites"]) == {"persona", "secret"}
    assert merged["suites"]["secret"] == saved["suites"]["secret"]
    assert merged["meta"]["ablation_command"] == "oracle eval --ablations-only"
    assert "oracle eval --ablations-only" in paths["markdown"].read_text()


def test_cli_eval_quick_on_tiny_oracle(tiny_oracle, tmp_path):
    from oracle_cli import app, load_commands

    load_commands()
    _, oracle_dir = tiny_oracle
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--oracle",
            str(oracle_dir),
            "--synthetic",
            "--quick",
            "--suite",
            "context",
            "--max-new-tokens",
            "3",
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert json.loads((out / "results.json").read_text())["meta"]["quick"] is True


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_quick_mode_on_the_toy_world(tmp_path):
    """``oracle eval --quick`` on the shipped toy world: every suite, ablations included.

    The budget (3 minutes) is checked on this process's CPU time, which other work on a
    shared machine does not inflate.
    """
    import time

    from evals.ablations import ABLATIONS_DIR

    if not (TOY_WORLD / "oracle" / "oracle_config.json").is_file():
        pytest.skip("the toy world's oracle is not shipped in this checkout")
    start = time.process_time()
    results, paths = run_eval(
        RunSpec(
            suites=["persona", "secret", "context", "system"],
            out_dir=str(tmp_path),
            quick=True,
            ablations_dir=str(ABLATIONS_DIR),
            device="cpu",
        )
    )
    assert time.process_time() - start < 180
    assert paths["html"].is_file()
    persona = results["suites"]["persona"]
    assert persona["n_test"] == 24 and persona["methods"]["oracle"]["all"]["n"] == 24
    # the toy oracle reads the persona: far above its shuffled control
    assert persona["oracle_minus"]["shuffled"]["lo"] > 0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ablation_oracles_train_without_machine_paths_and_are_evaluated(tmp_path):
    from pathlib import Path

    from evals.ablations import train_ablation
    from evals.evaluate import conclusions, trained_ablations
    from oracle.tiny import save_tiny

    base = save_tiny(tmp_path / "target", "llama")
    root = tmp_path / "ablations"
    for name in ("default", "site_embedding"):
        out = train_ablation(name, 2, 8, 0, root, target=base, batch_size=4)
        for f in Path(out).iterdir():
            assert str(tmp_path) not in f.read_text(errors="ignore"), f.name
    cfg = json.loads((root / "site_embedding" / "oracle_config.json").read_text())
    assert cfg["injection_site"] == "embedding" and cfg["base_model"] == "../../target"
    suite = synthetic_suites(0)["persona"].subsample(4, 10, seed=0)
    ab = trained_ablations(root, None, suite, EvalConfig(max_new_tokens=2, n_resamples=50), "cpu")
    assert set(ab) == {"site", "read_layer", "mode"}
    assert [r["name"] for r in ab["site"]["rows"]] == ["layer:1", "embedding"]
    assert [r["is_default"] for r in ab["site"]["rows"]] == [True, False]
    lines = conclusions({"ablations": ab})
    assert any(line.startswith("site:") for line in lines)
