"""Unit tests of the evaluation's parts: bootstrap, controls, probe, text reader and hidden
tags, group statistics, the best constant answer, collapse, the report, the synthetic and toy
suites."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from evals import analysis as A
from evals.bootstrap import bootstrap_ci
from evals.controls import derangement, noise, shuffled, zeros
from evals.probe import curve_sizes, fit_probe, trainable
from evals.suites import suites_from_items
from evals.svg import bar_chart
from evals.synthetic import synthetic_items
from evals.text_reader import gives_away, tag_hidden


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


def test_the_probe_learns_a_planted_direction_with_c_chosen_by_cross_validation():
    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"]
    centers = rng.normal(size=(3, 16)) * 2
    y = [labels[i % 3] for i in range(600)]
    x = np.stack([centers[i % 3] for i in range(600)]) + rng.normal(size=(600, 16))
    fit = fit_probe(
        "label",
        x[:450],
        y[:450],
        x[450:],
        curve_score=lambda p: float(np.mean([a == b for a, b in zip(p, y[450:], strict=True)])),
        curve_sizes=curve_sizes(450, 50),
    )
    acc = np.mean([p == t for p, t in zip(fit.predictions, y[450:], strict=True)])
    assert acc > 0.9 and fit.C in (0.001, 0.01, 0.1, 1.0) and len(fit.cv_scores) == 4
    assert [c["n_train"] for c in fit.curve] == [50, 200, 450]
    noise_fit = fit_probe("label", rng.normal(size=(300, 16)), y[:300], x[450:])
    noise_acc = np.mean([p == t for p, t in zip(noise_fit.predictions, y[450:], strict=True)])
    assert noise_acc < 0.6
    # open answers: only answers seen at least twice become classes
    assert trainable("text", ["the cat", "the cat", "a dog"]) == [True, True, False]
    assert curve_sizes(5000) == [250, 1000, 4000, 5000]


def test_text_reader_tags_items_whose_text_gives_the_label_away():
    train = ["Arr matey, the sea", "Arr, ahoy", "Bon appetit, my friend", "Voila, bon appetit"] * 5
    train_y = ["pirate", "pirate", "chef", "chef"] * 5
    test = ["Ahoy matey!", "Bon appetit!", "I am just a helpful assistant.", "A pirate, I am."]
    gold = ["pirate", "chef", "chef", "pirate"]
    tags = tag_hidden(
        "label",
        test,
        gold,
        ["g0", "g1", "g2", "g3"],
        lambda pred, i: pred == gold[i],
        train,
        train_y,
        aliases={"pirate": ["buccaneer"]},
    )
    assert tags.predictions[:2] == ["pirate", "chef"]
    assert tags.reasons[:2] == ["reader", "reader"]
    # the plain reply gives nothing: hidden unless the reader happened to guess right
    assert tags.hidden[2] == (tags.predictions[2] != "chef")
    # the label word itself makes an item visible, whatever the reader says
    assert not tags.hidden[3]
    assert gives_away("Yo ho, a buccaneer!", "pirate", "label", ["buccaneer"]) == "buccaneer"
    assert gives_away("Arr!", "pirate", "label", label_words=["arr"]) == "arr"
    assert gives_away("no, never", "no", "yes_no") is None  # yes/no words give nothing away
    assert gives_away("and the cat sat", "the cat", "text") == "the cat"
    assert gives_away("concatenate", "cat", "label") is None
    # without train items the reader is cross-fitted on the test items
    crossed = tag_hidden("label", train, train_y, [str(i) for i in range(20)], lambda p, i: False)
    assert "cross-fitted" in crossed.fitted_on and len(crossed.predictions) == 20


def test_group_statistics_pair_on_groups_and_average_wordings():
    groups = ["a", "a", "b", "b", "c", "c"]
    values = [1.0, 0.0, 1.0, 1.0, 0.0, None]
    means = A.group_means(values, groups, [True] * 6)
    assert means == {"a": 0.5, "b": 1.0, "c": 0.0}
    est = A.estimate(values, groups, [True] * 6, 200, 0)
    assert est["n"] == 3 and est["value"] == pytest.approx(0.5)
    same = A.paired(values, values, groups, [True] * 6, 200, 0)
    assert same["lo"] == same["hi"] == 0.0  # pairing: no spread at all
    # a method that ran on one item per group is compared on those groups
    other = [0.0, None, 0.0, None, None, None]
    d = A.paired(values, other, groups, [True] * 6, 200, 0)
    assert d["n"] == 2 and d["value"] == pytest.approx(0.75)


def test_the_constant_comes_from_the_training_labels_and_the_distribution_counts():
    from evals.summary import train_constant

    res = {
        "answer_type": "label",
        "train_labels": ["moon"] * 5 + ["apple"] * 3,
        "items": [{"label": "apple"}] * 6,
    }
    # the most frequent training label, even where the test items hold another
    assert train_constant(res) == "moon"
    res["train_labels"] = []
    assert train_constant(res) == "apple"  # no train items: the test labels (said so)
    text = {"answer_type": "text", "train_labels": ["the cat", "the dog", "a cat"] * 2, "items": []}
    assert train_constant(text) == "the cat"
    d = A.distribution(["apple"] * 9 + ["moon"])
    assert d["top_answer"] == "apple" and d["top_share"] == 0.9 and d["distinct"] == 2
    assert d["entropy_bits"] == pytest.approx(0.469, abs=1e-3)


def test_bar_chart_draws_one_bar_per_value():
    svg = bar_chart(["a", "b", "c"], [0.2, float("nan"), 0.9], [0.1, 0, 0.8], [0.3, 0, 1.0], "t")
    assert svg.startswith("<svg") and svg.count("<rect") == 2
    with pytest.raises(ValueError):
        bar_chart(["a"], [0.1, 0.2], [0.0], [0.3], "t")


def test_synthetic_suites_hold_out_users_pairs_and_wordings():
    suites = suites_from_items(synthetic_items(0))
    assert list(suites) == ["persona", "secret", "system"]
    persona = suites["persona"]
    train_users = {i.conversation[-2]["content"] for i in persona.train}
    held = [i for i in persona.test if "heldout_user" in i.tags]
    assert held and all(i.conversation[-2]["content"] not in train_users for i in held)
    train_pairs = {(i.meta["persona"], i.meta["secret"]) for i in persona.train}
    combos = [i for i in persona.test if "heldout_combo" in i.tags]
    assert combos and all((i.meta["persona"], i.meta["secret"]) not in train_pairs for i in combos)
    train_questions = {i.question for i in persona.train}
    assert all(
        i.question not in train_questions for i in persona.test if "heldout_question" in i.tags
    )
    assert suites["system"].answer_type == "yes_no" and suites["system"].labels == ["yes", "no"]
    sub = persona.subsample(5, 7, seed=3)
    assert len({i.key for i in sub.test}) == 5 and len(sub.train) == 7
    assert len(sub.test) == 5 * 4  # every wording of a sampled conversation is kept


@pytest.mark.slow
def test_toy_world_suites_are_held_out_with_five_wordings_and_same_reply_controls():
    from worlds.toy.suite import toy_world_items

    items = toy_world_items(["persona", "secret", "context_next"], seed=0, n_test=30, n_train=300)
    suites = suites_from_items(items)
    persona = suites["persona"]
    train_users = {i.conversation[1]["content"] for i in persona.train if len(i.conversation) > 1}
    assert not any(
        m["content"] in train_users
        for i in persona.test
        for m in i.conversation
        if m["role"] == "user"
    )
    held_q = {i.question for i in persona.test if "heldout_question" in i.tags}
    assert len(held_q) >= 5 and not held_q & {i.question for i in persona.train}
    tags = {t for i in persona.test for t in i.tags}
    assert {"heldout_user", "plain_reply", "no_reply", "heldout_system"} <= tags
    for item in persona.test[:20]:
        if item.has_system:
            plain = item.without_system()
            assert plain == [m for m in item.conversation if m["role"] != "system"]
    assert all(i.label != "none" for i in suites["secret"].test)
    ctx = suites["context_next"]
    assert ctx.answer_type == "text" and all(i.read_span.startswith("indices:") for i in ctx.test)
    assert all(i.meta["direction"] == "next" for i in ctx.test)
