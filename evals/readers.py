"""The methods that read without asking the oracle: the text-only reader (which also tags the
reader-defined hidden items), the two linear probes on the read span (mean and last
position), and ``probe_text``: the same probe fitted on the target's activations of each
conversation **with its system prompt removed**, the same network reading only the text.

``probe_text`` is the strongest text baseline: whatever the visible text gives away, the
target's own activations of that text carry, and a probe with as much data reads it. Only its
mean-pooled features are used (one fit; the learning curve belongs to ``probe_mean``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evals.captures import visible_text
from evals.probe import curve_sizes, fit_probe, pooled
from evals.suite_format import SuiteItem
from evals.text_reader import reader_probabilities, tag_hidden


def _visible(run: Any, item: SuiteItem) -> str:
    return visible_text(item, run.caps.get(item), run.tok)


def without_system(item: SuiteItem) -> SuiteItem | None:
    """The item reading its conversation minus the system prompt (None for plain text)."""
    if item.conversation is None:
        return None
    conv = item.without_system() if item.has_system else item.conversation
    return SuiteItem(**{**item.to_dict(), "conversation": conv, "no_system_conversation": None})


def run_readers(run: Any) -> dict:
    """Record ``text_only``, ``probe_mean``, ``probe_last`` and ``probe_text`` on ``run``
    (the runner's suite run); return the hidden tags and the fits' details."""
    suite, train, cfg = run.suite, run.suite.train, run.cfg
    need_probe = bool({"probe_mean", "probe_last"} & set(cfg.methods))
    if train and (need_probe or suite.answer_type == "text"):
        run.caps.run(train, keep=False)
    train_visible = [_visible(run, i) if i.answer_type == "text" else i.transcript() for i in train]
    every = list(range(len(run.items)))
    labels = [i.label for i in run.items]
    tags = tag_hidden(
        suite.answer_type,
        run.visible,
        labels,
        [i.key for i in run.items],
        lambda pred, i: run.score(pred, i).correct == 1.0,
        train_visible,
        [i.label for i in train],
        suite.aliases,
        suite.label_words,
        cfg.seed,
    )
    run.record("text_only", every, tags.predictions)
    info: dict = {"text_reader": tags.fitted_on, "hidden": tags.hidden}
    info["hidden_reasons"] = tags.reasons
    constructed = [i.constructed_hidden for i in run.items]
    info["constructed_hidden"] = constructed
    if not any(constructed) and suite.answer_type != "text" and train:
        # no item is hidden by construction: the reader's own probability for the true label,
        # not its top answer, defines the hidden items (at most the label's training share)
        p_true, prior = reader_probabilities(
            train_visible, [i.label for i in train], run.visible, labels, cfg.seed
        )
        info["reader_p_true"] = p_true
        info["reader_prior"] = prior
    if not train:
        return info
    info["probe"] = {}
    if need_probe:
        feats = np.stack([np.stack(run.caps.get(i).pooled) for i in train])  # (N, 2, D)
        test = np.stack([np.stack(pooled(a)) for a in run.acts])  # (M, 2, D)
        for v, name in enumerate(("probe_mean", "probe_last")):
            if name not in cfg.methods:
                continue

            def curve_score(preds: list[str]) -> float:
                return float(np.mean([run.score(p, i).f1 for i, p in enumerate(preds)]))

            fit = fit_probe(
                suite.answer_type,
                feats[:, v],
                [i.label for i in train],
                test[:, v],
                cfg.seed,
                curve_score if cfg.learning_curve and v == 0 else None,
                curve_sizes(len(train)),
            )
            run.record(name, every, fit.predictions)
            info["probe"][name] = _fit_info(fit)
    if "probe_text" in cfg.methods and suite.answer_type != "text":
        fit = text_probe(run, train)
        if fit is not None:
            run.record("probe_text", every, fit.predictions)
            info["probe"]["probe_text"] = _fit_info(fit)
    return info


def text_probe(run: Any, train: list[SuiteItem]):
    """The mean-pooled probe fitted and tested on conversations without their system prompt
    (None when the items are not conversations)."""
    plain_train = [without_system(i) for i in train]
    plain_test = [without_system(i) for i in run.items]
    if any(p is None for p in plain_train + plain_test):
        return None
    run.caps.run(plain_train, run.span, keep=False)
    run.caps.run(plain_test, run.span, keep=False)
    feats = np.stack([run.caps.get(i, run.span).pooled[0] for i in plain_train])
    test = np.stack([run.caps.get(i, run.span).pooled[0] for i in plain_test])
    return fit_probe(
        run.suite.answer_type, feats, [i.label for i in train], test, run.cfg.seed, None, []
    )


def _fit_info(fit) -> dict:
    return {
        "C": fit.C,
        "cv_scores": {str(k): s for k, s in fit.cv_scores.items()},
        "n_train": fit.n_train,
        "n_classes": fit.n_classes,
        "curve": fit.curve,
    }
