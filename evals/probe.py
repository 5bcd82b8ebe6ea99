"""The linear probe: logistic regression on the same activations the oracle reads.

Two variants, each read at the item's read span: ``probe_mean`` (the mean over the read
positions) and ``probe_last`` (the last read position). Features are standardised; the
regularisation strength C is chosen by 3-fold cross-validation (on up to ``CV_MAX`` train
items), then the probe is refitted on all of them. A learning curve (test score against the
number of train items, up to all of them) shows whether more data would help it.

``text`` families (open answers) are probed as a classification over the train items' gold
answers that occur at least twice (the ``MAX_CLASSES`` most frequent); the predicted answer is
scored like any other answer.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

log = logging.getLogger(__name__)

C_GRID = (0.001, 0.01, 0.1, 1.0)
CV_MAX = 2000
MAX_CLASSES = 500
MAX_ITER = 200
TOL = 1e-3


def pooled(acts_PD: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean over positions, last position) of one activation set (P, D) -> two (D,) arrays."""
    a = acts_PD.float()
    return a.mean(0).numpy(), a[-1].numpy()


def _model(C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=MAX_ITER, tol=TOL))


def choose_c(x_ND: np.ndarray, y: Sequence[str], seed: int) -> tuple[float, dict[float, float]]:
    """The C of :data:`C_GRID` with the best 3-fold cross-validated accuracy (and every score)."""
    from sklearn.model_selection import KFold, cross_val_score

    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))[:CV_MAX]
    x, yy = x_ND[idx], np.asarray(y)[idx]
    scores = {}
    for C in C_GRID:
        cv = KFold(3, shuffle=True, random_state=seed)
        scores[C] = float(cross_val_score(_model(C, seed), x, yy, cv=cv, n_jobs=1).mean())
    return max(scores, key=lambda c: (scores[c], -c)), scores


@dataclass
class ProbeFit:
    """A fitted probe's predictions on the test items, with how it was fitted."""

    predictions: list[str]
    C: float | None
    cv_scores: dict[float, float] = field(default_factory=dict)
    n_train: int = 0
    n_classes: int = 0
    curve: list[dict] = field(default_factory=list)  # [{"n_train", "value"}]


def trainable(answer_type: str, y: Sequence[str]) -> list[bool]:
    """Which train items the probe can learn from: all of them, or for open answers those
    whose gold answer is one of the frequent ones (a class)."""
    if answer_type != "text":
        return [True] * len(y)
    counts = Counter(y)
    classes = {a for a, n in counts.most_common(MAX_CLASSES) if n >= 2}
    return [a in classes for a in y]


def fit_probe(
    answer_type: str,
    train_X: np.ndarray,
    train_y: Sequence[str],
    test_X: np.ndarray,
    seed: int = 0,
    curve_score: Callable[[list[str]], float] | None = None,
    curve_sizes: Sequence[int] = (),
) -> ProbeFit:
    """Fit on (N, D) features and N labels, predict (M, D) test features.

    ``curve_score(predictions) -> float`` and ``curve_sizes``: refit on the first n train
    items (a seeded shuffle) for each n, at the chosen C, and score the test predictions.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # small solves: more BLAS threads only contend
        return _fit_probe(answer_type, train_X, train_y, test_X, seed, curve_score, curve_sizes)


def _fit_probe(answer_type, train_X, train_y, test_X, seed, curve_score, curve_sizes) -> ProbeFit:
    keep = trainable(answer_type, train_y)
    x = train_X[np.asarray(keep, dtype=bool)]
    y = [label for label, k in zip(train_y, keep, strict=True) if k]
    classes = sorted(set(y))
    if len(classes) < 2:
        only = classes[0] if classes else ""
        return ProbeFit([only] * len(test_X), None, n_train=len(y), n_classes=len(classes))
    C, scores = choose_c(x, y, seed)
    model = _model(C, seed).fit(x, y)
    preds = [str(p) for p in model.predict(test_X)]
    fit = ProbeFit(preds, C, scores, len(y), len(classes))
    if curve_score is not None:
        order = np.random.default_rng(seed + 1).permutation(len(y))
        for n in sorted({min(s, len(y)) for s in curve_sizes}):
            sub = order[:n]
            if len({y[i] for i in sub}) < 2:
                continue
            m = _model(C, seed).fit(x[sub], [y[i] for i in sub])
            value = curve_score([str(p) for p in m.predict(test_X)])
            fit.curve.append({"n_train": int(n), "value": value})
    return fit


def curve_sizes(n: int, smallest: int = 250) -> list[int]:
    """Sizes of a learning curve: x4 steps from ``smallest`` up to ``n`` (``n`` included)."""
    sizes, s = [], smallest
    while s < n:
        sizes.append(s)
        s *= 4
    return [*sizes, n]
