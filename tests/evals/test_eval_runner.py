"""End-to-end runs of the evaluation on tiny random models (and the toy world if shipped)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from evals.black_box import black_box, continuation, render_transcript
from evals.evaluate import RunSpec, run_eval
from evals.methods import training_free
from evals.runner import BASELINES, CONTROLS, EvalConfig, evaluate_suite, primary_items
from evals.scoring import yes_no_of
from evals.suite_format import SuiteItem, write_suite_file
from evals.suites import suites_from_items
from evals.synthetic import synthetic_items
from oracle.engines import create_engine
from tests.helpers import make_oracle_dir
from worlds.toy.world import TOY_WORLD

RAN_ON_EVERY_ITEM = {"oracle", "text_only", "probe_mean", "probe_last", "probe_text"}


@pytest.fixture(scope="module")
def tiny_oracle(tmp_path_factory):
    return make_oracle_dir(tmp_path_factory.mktemp("evals"), "llama")


@pytest.fixture(scope="module")
def engine(tiny_oracle):
    _, oracle_dir = tiny_oracle
    return create_engine("hf", None, str(oracle_dir), device="cpu")


def test_every_method_scores_its_items_with_one_function(engine):
    suite = suites_from_items(synthetic_items(0))["persona"].subsample(6, 60, seed=0)
    res = evaluate_suite(engine, suite, EvalConfig(max_new_tokens=3, n_resamples=100))
    n = len(suite.test)
    primary = primary_items(suite.test)
    assert len(primary) == 6 and all("heldout_question" in suite.test[i].tags for i in primary)
    expected = {"oracle", *BASELINES, *CONTROLS} - {"constant", "continuation"}
    assert set(res["methods"]) == expected
    for name, m in res["methods"].items():
        ran = [i for i in range(n) if m["answers"][i] is not None]
        assert ran == (list(range(n)) if name in RAN_ON_EVERY_ITEM else primary), name
        assert all(m["correct"][i] in (0.0, 1.0) for i in ran)
    answers = {k: v["answers"] for k, v in res["methods"].items()}
    pick = [answers["oracle"][i] for i in primary]
    # the adapter matters: the base model given the same injection answers otherwise
    assert [answers["training_free"][i] for i in primary] != pick
    # the input matters: noise and zero vectors change what the oracle says
    assert [answers["noise"][i] for i in primary] != pick or [
        answers["zeros"][i] for i in primary
    ] != pick
    # activations of a causal model carry the system prompt: a probe reads it, even untrained
    probe = res["methods"]["probe_mean"]["correct"]
    assert sum(probe) / n > 0.4
    assert len(res["hidden"]) == n and res["text_reader"].endswith("train items")


def test_the_no_system_control_changes_only_the_system_prompt(engine):
    suite = suites_from_items(synthetic_items(0))["persona"].subsample(4, 10, seed=1)
    item = next(i for i in suite.test if i.has_system)
    plain = item.without_system()
    assert plain == item.conversation[1:]  # same user turn, same reply text
    res = evaluate_suite(
        engine, suite, EvalConfig(max_new_tokens=3, methods=("oracle", "no_system"))
    )
    ran = [i for i, a in enumerate(res["methods"]["no_system"]["answers"]) if a is not None]
    assert ran and all(suite.test[i].has_system for i in ran)


def test_black_box_reads_the_transcript_as_plain_text(engine):
    conv = [
        {"role": "system", "content": "You are a pirate."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
    ]
    assert render_transcript(conv, None) == "User: Hi\nAssistant: Hello."  # no system prompt
    texts, p_yes = black_box(
        engine,
        ["User: Hi", "User: Hey"],
        ["Is there a system prompt?"] * 2,
        [True, True],
        3,
        yes_no=True,
    )
    assert len(texts) == 2 and all(0.0 <= p <= 1.0 for p in p_yes)
    assert p_yes[0] != p_yes[1]  # the transcript matters
    tok = engine.transformers_oracle().tokenizer
    row = tok.encode("The cat sat on the", add_special_tokens=False)
    out = continuation(engine, [row, row[:-1]], [2, 3])
    assert len(out) == 2 and all(isinstance(x, str) for x in out)
    acts = [torch.randn(3, engine.d_model)]
    q = ["Is it a pirate?"]
    texts, p = training_free(engine, acts, q, 1, 3, 1, yes_no=True)
    assert 0.0 <= p[0] <= 1.0
    assert texts != engine.transformers_oracle().answer(acts, q, 1, max_new_tokens=3)


def test_run_eval_on_a_suite_file_writes_json_markdown_and_html(tiny_oracle, tmp_path):
    _, oracle_dir = tiny_oracle
    items = [
        i
        for i in synthetic_items(0)
        if i.family in ("persona", "system")
        and (i.split == "train" or i.key.endswith(("1", "2", "3")))
    ]
    items.append(
        SuiteItem(
            id="ctx-1",
            family="context_next",
            question="What comes next?",
            label="on the mat",
            text="The cat sat on the mat",
            read_span="last:2",
            answer_type="text",
        )
    )
    path = write_suite_file(items, tmp_path / "suite.jsonl")
    spec = RunSpec(
        suite_files=[str(path)],
        oracle=str(oracle_dir),
        out_dir=str(tmp_path / "out"),
        device="cpu",
        command="oracle eval --suite suite.jsonl",
        eval=EvalConfig(max_new_tokens=3, n_resamples=100, learning_curve=False),
    )
    results, paths = run_eval(spec)
    saved = json.loads(paths["json"].read_text())
    assert list(saved["suites"]) == ["persona", "system", "context_next"]
    ctx = saved["suites"]["context_next"]
    assert ctx["metric"] == "token_f1" and "continuation" in ctx["methods"]
    assert ctx["text_reader"].startswith("cross-fitted")  # a family with no train items
    persona = saved["suites"]["persona"]["summary"]
    # an untrained (random) adapter: its answers tell nothing about the labels
    assert persona["verdict"] == "carries no information", persona["verdict_why"]
    assert [r["name"] for r in saved["ablations"]["positions"]["rows"]][:3] == [
        "last:1",
        "last:4",
        "last:16",
    ]
    md = paths["markdown"].read_text()
    assert md.index("## Verdicts") < md.index("## Suite 'persona'")
    assert "oracle eval --suite suite.jsonl" in md and "random test items" in md
    assert "<svg" in paths["html"].read_text()
    assert str(tmp_path) not in json.dumps(saved["meta"])  # no machine paths in the report
    from dataclasses import replace

    merged, _ = run_eval(replace(spec, parts="ablations", command="oracle eval --ablations-only"))
    assert merged["suites"]["system"] == saved["suites"]["system"]
    assert merged["meta"]["ablation_command"] == "oracle eval --ablations-only"


def test_cli_eval_runs_a_suite_file_and_reports_bad_ones(tiny_oracle, tmp_path):
    from oracle_cli import app, load_commands

    load_commands()
    _, oracle_dir = tiny_oracle
    items = [i for i in synthetic_items(0) if i.family == "secret"]
    path = write_suite_file(items, tmp_path / "secret.jsonl")
    out = tmp_path / "cli"
    args = ["eval", "--oracle", str(oracle_dir), "--max-new-tokens", "2", "--device", "cpu"]
    result = CliRunner().invoke(
        app, [*args, "--suite", str(path), "--n-test", "6", "--skip-ablations", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "secret: " in result.output and (out / "report.html").is_file()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "family": "f"}\n')
    result = CliRunner().invoke(app, [*args, "--suite", str(bad), "--out", str(out)])
    assert result.exit_code != 0
    assert "line 1 (id 'x'): 'question' is required" in str(result.exception)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_quick_mode_on_the_toy_world(tmp_path):
    """``oracle eval --quick`` on the shipped toy world, every suite and the ablations: it
    runs, reports, and its figures say what the shipped oracle does. (Its time is measured
    by ``python -m scripts.bench.eval_quick``, not asserted here.)"""
    from evals.options import EvalOptions, run_spec

    if not (TOY_WORLD / "oracle" / "oracle_config.json").is_file():
        pytest.skip("the toy world's oracle is not shipped in this checkout")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # no option given: the default world's suite files, oracle and ablation oracles
        options = EvalOptions(quick=True, device="cpu", out=str(tmp_path), feature_cache="none")
        spec = run_spec(options, show_progress=False)
        assert spec.ablations_dir and spec.suite_files
        results, paths = run_eval(spec)
    finally:
        torch.set_num_threads(threads)
    assert paths["html"].is_file()
    persona = results["suites"]["persona"]
    assert len({it["group"] for it in persona["items"]}) == 40
    # the toy oracle reads the persona: far above its shuffled control, on held-out wordings
    assert persona["summary"]["oracle_minus"]["heldout_question"]["shuffled"]["lo"] > 0
    assert persona["summary"]["counterfactual"]["swap"]["follows"]["value"] > 0.3
    # the yes/no suite's answer probability is that of the side taken (P(yes) over yes and no)
    system = results["suites"]["system"]
    conf = system["checks"]["calibration"]
    assert conf["probability"] and all(0 <= p <= 1 for p in conf["probability"] if p is not None)
    p_yes = system["methods"]["oracle"]["p_yes"]
    answers = system["methods"]["oracle"]["answers"]
    for i, p in zip(conf["index"], conf["probability"], strict=True):
        side = yes_no_of(answers[i], p_yes[i])  # as the scoring read the answer
        assert p == pytest.approx(p_yes[i] if side == "yes" else 1 - p_yes[i]), answers[i]
    # the toy oracle is right on nearly every system item, and sure of it
    assert system["summary"]["calibration"]["probability"]["reliability"]["ece"] < 0.3
    for name, suite in results["suites"].items():
        assert suite["summary"]["verdict"] is not None, name


def test_train_features_are_cached_on_disk_and_reloaded(engine, tmp_path):
    import numpy as np

    from evals.runner import Captures

    train = suites_from_items(synthetic_items(0))["persona"].train[:40]
    first = Captures(engine, 1, cache_dir=tmp_path)
    first.run(train, keep=False)
    assert len(list(tmp_path.glob("*.npz"))) == 1

    class NoCapture:  # the cache must answer: any capture fails
        config, target_name = engine.config, engine.target_name

        def capture(self, requests):
            raise AssertionError("captured again")

    again = Captures(NoCapture(), 1, cache_dir=tmp_path)
    again.run(train, keep=False)
    for item in train:
        a, b = first.get(item), again.get(item)
        np.testing.assert_array_equal(a.pooled[0], b.pooled[0])
        np.testing.assert_array_equal(a.pooled[1], b.pooled[1])
        assert a.token_ids == b.token_ids
    # another layer is another cache entry
    other = Captures(engine, 0, cache_dir=tmp_path)
    other.run(train, keep=False)
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_capture_only_fills_the_cache_that_the_evaluation_then_reads(tiny_oracle, tmp_path):
    _, oracle_dir = tiny_oracle
    cfg = EvalConfig(
        n_test=4,
        methods=("probe_mean",),
        feature_cache=str(tmp_path / "cache"),
        learning_curve=False,
        n_resamples=50,
    )
    spec = RunSpec(
        synthetic=True,
        families=["persona"],
        oracle=str(oracle_dir),
        out_dir=str(tmp_path / "out"),
        device="cpu",
        parts="capture",
        eval=cfg,
    )
    assert run_eval(spec) == ({}, {})
    cached = sorted((tmp_path / "cache").glob("*.npz"))
    assert cached and not (tmp_path / "out" / "results.json").exists()
    from dataclasses import replace

    with_cache, _ = run_eval(replace(spec, parts="suites"))
    assert sorted((tmp_path / "cache").glob("*.npz")) == cached  # nothing captured anew
    without, _ = run_eval(replace(spec, parts="suites", eval=replace(cfg, feature_cache=None)))
    a = with_cache["suites"]["persona"]["methods"]["probe_mean"]["answers"]
    assert a == without["suites"]["persona"]["methods"]["probe_mean"]["answers"]
