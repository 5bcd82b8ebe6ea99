"""Unit tests of the evaluation suite's parts: bootstrap, scoring, controls, probe, report."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evals.bootstrap import bootstrap_ci
from evals.controls import derangement, noise, shuffled, zeros
from evals.items import EvalItem, Suite
from evals.probe import LinearProbe, mean_pool
from evals.report import build_blocks, to_html, to_markdown, write_report
from evals.runner import EvalConfig, flags_of, oracle_minus, summarise
from evals.scoring import chance_rates, label_of
from evals.suites import parse_suite_names, synthetic_suites
from evals.svg import bar_chart
from oracle.errors import OracleInputError


def test_bootstrap_interval_brackets_mean_and_is_seeded():
    x = np.array([1.0] * 30 + [0.0] * 70)
    est = bootstrap_ci(x, n_resamples=1000, seed=0)
    assert est.value == pytest.approx(0.3)
    assert est.lo < 0.3 < est.hi
    # the binomial standard error is ~0.046: a 95% interval is about +-0.09 wide
    assert 0.15 < est.hi - est.lo < 0.25
    assert bootstrap_ci(x, seed=0) == est
    assert bootstrap_ci(x, seed=1) != est
    assert bootstrap_ci([1.0] * 10).lo == 1.0
    assert math.isnan(bootstrap_ci([]).value)


def test_label_of_picks_first_named_label_on_word_boundaries():
    labels = ["pirate", "chef", "none", "cat"]
    assert label_of("A pirate, not a chef.", labels) == "pirate"
    assert label_of("The chef. Or a pirate?", labels) == "chef"
    assert label_of("concatenate", labels) is None  # 'cat' inside a word does not count
    assert label_of("No persona.", labels, {"none": ["no persona"]}) == "none"
    assert label_of("", labels) is None
    assert chance_rates(["a", "a", "b"], 4) == (0.25, pytest.approx(2 / 3))


def test_controls_keep_shapes_and_destroy_the_signal():
    acts = [torch.randn(n, 8) * (i + 1) for i, n in enumerate([3, 5, 2, 4])]
    perm = derangement(4, seed=0)
    assert sorted(perm) == [0, 1, 2, 3] and all(i != p for i, p in enumerate(perm))
    sh = shuffled(acts, seed=0)
    assert all(s is acts[p] for s, p in zip(sh, perm, strict=True))
    assert all(
        z.abs().sum() == 0 and z.shape == a.shape for z, a in zip(zeros(acts), acts, strict=True)
    )
    nz = noise(acts, seed=0)
    for n_, a in zip(nz, acts, strict=True):
        assert n_.shape == a.shape
        torch.testing.assert_close(n_.norm(dim=-1), a.norm(dim=-1))
        cos = torch.nn.functional.cosine_similarity(n_, a, dim=-1)
        assert cos.abs().max() < 0.99
    torch.testing.assert_close(noise(acts, seed=0)[1], nz[1])


def test_linear_probe_learns_a_planted_direction():
    gen = torch.Generator().manual_seed(0)
    labels = ["a", "b", "c"]
    centers = torch.randn(3, 16, generator=gen) * 2
    y = [labels[i % 3] for i in range(150)]
    x = torch.stack([centers[i % 3] for i in range(150)]) + torch.randn(150, 16, generator=gen)
    probe = LinearProbe(labels).fit(x[:100], y[:100])
    acc = np.mean([p == t for p, t in zip(probe.predict(x[100:]), y[100:], strict=True)])
    assert acc > 0.9
    shuffled_y = [y[(i * 7 + 3) % 100] for i in range(100)]
    noisy = LinearProbe(labels).fit(torch.randn(100, 16, generator=gen), shuffled_y)
    noise_acc = np.mean([p == t for p, t in zip(noisy.predict(x[100:]), y[100:], strict=True)])
    assert noise_acc < 0.7
    with pytest.raises(ValueError, match="not in the probe's label set"):
        LinearProbe(labels).fit(x[:2], ["a", "z"])
    assert mean_pool([torch.ones(3, 4), torch.zeros(1, 4)]).shape == (2, 4)


def test_synthetic_suites_hold_out_users_and_pairs():
    suites = synthetic_suites(0)
    persona = suites["persona"]
    train_users = {i.messages[-2]["content"] for i in persona.train}
    held = [i for i in persona.test if i.split == "heldout_user"]
    assert held and all(i.messages[-2]["content"] not in train_users for i in held)
    train_pairs = {(i.meta["persona"], i.meta["secret"]) for i in persona.train}
    combos = [i for i in persona.test if i.split == "unseen_combo"]
    assert combos and all((i.meta["persona"], i.meta["secret"]) not in train_pairs for i in combos)
    no_sys = persona.test[0].without_system()
    assert all(m["role"] != "system" for m in no_sys)
    sub = persona.subsample(5, 7, seed=3)
    assert len(sub.test) == 5 and len(sub.train) == 7
    assert [i.label for i in sub.test] == [i.label for i in persona.subsample(5, 7, 3).test]


def test_suite_validation_and_round_trip(tmp_path):
    msgs = [{"role": "user", "content": "hi"}]
    with pytest.raises(OracleInputError, match="not one of"):
        Suite("s", "q?", ["a", "b"], [], [EvalItem(msgs, "c")])
    with pytest.raises(OracleInputError, match="no test item"):
        Suite("s", "q?", ["a", "b"], [], [])
    s = Suite("s", "q?", ["a", "b"], [EvalItem(msgs, "a", "train")], [EvalItem(msgs, "b")])
    loaded = Suite.load(s.save(tmp_path / "s.json"))
    assert loaded == s
    with pytest.raises(OracleInputError, match="does not exist"):
        Suite.load(tmp_path / "missing.json")
    assert parse_suite_names("all") == ["persona", "secret", "context", "system"]
    with pytest.raises(OracleInputError, match="--suite"):
        parse_suite_names("personas")


def _fake_results(control_scores: list[float]) -> dict:
    cfg = EvalConfig(n_resamples=200)
    n = len(control_scores)
    splits = ["heldout_user"] * (n // 2) + ["unseen_combo"] * (n - n // 2)
    methods = {
        "oracle": {"kind": "oracle", **summarise([1.0] * n, splits, cfg)},
        "linear_probe": {"kind": "baseline", **summarise([0.5] * n, splits, cfg)},
        "shuffled": {"kind": "control", **summarise(control_scores, splits, cfg)},
    }
    suite = {
        "question": "q?",
        "labels": ["a", "b"],
        "n_test": n,
        "n_train": 4,
        "chance": 0.5,
        "majority": 0.5,
        "layer": 1,
        "positions": "non_system",
        "methods": methods,
        "flags": flags_of(methods, 0.5),
    }
    meta = {
        "command": "oracle eval --quick",
        "seed": 0,
        "quick": True,
        "n_resamples": 200,
        "target": "t",
        "oracle": "o",
        "source": "synthetic",
        "created": "now",
        "seconds": 1.0,
    }
    ablations = {
        "positions": {
            "title": "Positions",
            "rows": [
                {"name": "last:1", "all": methods["linear_probe"]["all"]},
                {"name": "all", "all": methods["oracle"]["all"]},
            ],
        }
    }
    return {"meta": meta, "suites": {"persona": suite}, "ablations": ablations}


def test_report_flags_a_control_that_does_not_fail(tmp_path):
    good = _fake_results([0.0, 1.0] * 20)
    assert good["suites"]["persona"]["flags"] == []
    bad = _fake_results([1.0] * 40)
    flags = bad["suites"]["persona"]["flags"]
    assert len(flags) == 1 and "control 'shuffled' did NOT fail" in flags[0]
    md = to_markdown(build_blocks(bad))
    assert "did NOT fail" in md and "oracle eval --quick" in md
    assert "| oracle | oracle | 1.000 [1.000, 1.000] |" in md
    paths = write_report(bad, tmp_path)
    html = paths["html"].read_text()
    assert html.count("<svg") == 2 and "did NOT fail" in html
    assert (tmp_path / "figures" / "ablation_positions.svg").is_file()
    assert "every control failed" in to_html(build_blocks(good))


def test_bar_chart_draws_one_bar_per_value():
    svg = bar_chart(["a", "b", "c"], [0.2, float("nan"), 0.9], [0.1, 0, 0.8], [0.3, 0, 1.0], "t")
    assert svg.startswith("<svg") and svg.count("<rect") == 2
    with pytest.raises(ValueError):
        bar_chart(["a"], [0.1, 0.2], [0.0], [0.3], "t")


def test_toy_world_suites_are_held_out_with_counterfactual_controls():
    from evals.toy_world import toy_world_suites

    suites = toy_world_suites(["persona", "context"], seed=0, n_test=40, n_train=60)
    persona = suites["persona"]
    train_users = {i.messages[-2]["content"] for i in persona.train}
    assert not any(i.messages[-2]["content"] in train_users for i in persona.test)
    assert {"heldout_user", "unseen_combo"} <= set(persona.splits)
    for item in persona.test[:10]:
        plain = item.without_system()
        assert all(m["role"] != "system" for m in plain)
        user = next(m for m in item.messages if m["role"] == "user")
        assert user in plain
    assert suites["context"].hidden_in_system is False
    assert all(i.label in suites["context"].labels for i in suites["context"].test)


def test_oracle_minus_is_a_paired_difference():
    cfg = EvalConfig(n_resamples=200)
    oracle = [1.0, 0.0] * 20
    methods = {
        "oracle": {"correct": oracle},
        "same": {"correct": list(oracle)},
        "opposite": {"correct": [1 - c for c in oracle]},
    }
    diff = oracle_minus(methods, cfg)
    assert diff["same"]["lo"] == diff["same"]["hi"] == 0.0  # pairing: no spread at all
    assert (
        diff["opposite"]["value"] == 0.0 and diff["opposite"]["hi"] - diff["opposite"]["lo"] > 0.3
    )
