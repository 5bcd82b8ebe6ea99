"""The text-only reader, and the hidden subset it tags.

The reader sees what a user of the transcript sees (an item's visible text: the non-system
turns, or a window's own tokens for open answers) and never the activations:

- ``label`` and ``yes_no`` families: TF-IDF (words and word pairs) + logistic regression
  (one-vs-rest), its regularisation chosen by 3-fold cross-validation;
- ``text`` families (open answers): the gold answer of the nearest training item (TF-IDF of
  character n-grams, cosine similarity).

It is fitted on the suite's train items (the same conversations as the linear probe). A suite
with no train items is cross-fitted on its test items (5 folds of groups), and says so.

An item is **visible** when the reader gets it right, or when its visible text contains the
label, an alias or one of its ``label_words`` (a persona's style words); every other item is
**hidden**: its label is not recoverable from the text, so only the activations can give it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from evals.scoring import answer_tokens

C_GRID = (1.0, 10.0, 100.0, 1000.0)
CV_MAX = 5000
CROSS_FIT_FOLDS = 5


def _label_model(train_texts: Sequence[str], train_y: Sequence[str], seed: int):
    """TF-IDF + logistic regression (one-vs-rest, liblinear), C chosen by 3-fold
    cross-validation on up to ``CV_MAX`` texts, then refitted on all of them.

    One-vs-rest with liblinear, not a multinomial L-BFGS fit: on TF-IDF of words and word
    pairs (thousands of features times 24 classes) L-BFGS took 10 s a fit at C = 1000 where
    liblinear takes 1 s, with the same held-out accuracy (toy world's secret suite)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, KFold
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import make_pipeline

    def pipe(C: float):
        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=100_000),
            OneVsRestClassifier(LogisticRegression(C=C, solver="liblinear")),
        )

    texts, y = list(train_texts), list(train_y)
    if len(texts) < 30:
        return pipe(10.0).fit(texts, y)
    idx = np.random.default_rng(seed).permutation(len(texts))[:CV_MAX]
    search = GridSearchCV(
        pipe(1.0),
        {"onevsrestclassifier__estimator__C": list(C_GRID)},
        cv=KFold(3, shuffle=True, random_state=seed),
        n_jobs=1,
    )
    search.fit([texts[i] for i in idx], [y[i] for i in idx])
    return pipe(search.best_params_["onevsrestclassifier__estimator__C"]).fit(texts, y)


def _predict_labels(
    train_texts: Sequence[str], train_y: Sequence[str], test_texts: Sequence[str], seed: int
) -> list[str]:
    classes = sorted(set(train_y))
    if len(classes) == 1:
        return [classes[0]] * len(test_texts)
    return [str(p) for p in _label_model(train_texts, train_y, seed).predict(list(test_texts))]


def _predict_nearest(
    train_texts: Sequence[str], train_y: Sequence[str], test_texts: Sequence[str], seed: int
) -> list[str]:
    from sklearn.feature_extraction.text import TfidfVectorizer

    vec = TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), sublinear_tf=True)
    train_X = vec.fit_transform(list(train_texts))
    test_X = vec.transform(list(test_texts))
    best = np.asarray((test_X @ train_X.T).argmax(axis=1)).ravel()  # rows are L2-normalised
    return [train_y[i] for i in best]


def fit_predict(
    answer_type: str,
    train_texts: Sequence[str],
    train_y: Sequence[str],
    test_texts: Sequence[str],
    seed: int = 0,
) -> list[str]:
    """The reader's answer for each test text: a label, or the nearest training answer."""
    from threadpoolctl import threadpool_limits

    if not train_texts:
        raise ValueError("the text-only reader needs training texts")
    fn = _predict_nearest if answer_type == "text" else _predict_labels
    with threadpool_limits(1):  # small solves: more BLAS threads only contend (6x slower seen)
        return fn(train_texts, train_y, test_texts, seed)


def reader_probabilities(
    train_texts: Sequence[str],
    train_y: Sequence[str],
    test_texts: Sequence[str],
    test_labels: Sequence[str],
    seed: int = 0,
) -> tuple[list[float], list[float]]:
    """(the reader's probability for each test item's true label, that label's share of the
    training labels). An item whose probability is at most its label's share is one the text
    gives no evidence for: the hidden subset of a suite that has no item hidden by
    construction."""
    from threadpoolctl import threadpool_limits

    counts = Counter(train_y)
    prior = [counts.get(label, 0) / max(len(train_y), 1) for label in test_labels]
    if len(counts) < 2:
        return [float(label in counts) for label in test_labels], prior
    with threadpool_limits(1):
        model = _label_model(train_texts, train_y, seed)
        proba = model.predict_proba(list(test_texts))
    classes = [str(c) for c in model.classes_]
    col = {c: k for k, c in enumerate(classes)}
    p_true = [
        float(proba[n, col[label]]) if label in col else 0.0 for n, label in enumerate(test_labels)
    ]
    return p_true, prior


def cross_fit_predict(
    answer_type: str, texts: Sequence[str], y: Sequence[str], groups: Sequence[str], seed: int = 0
) -> list[str]:
    """Each item predicted by a reader fitted on the other folds (folds of whole groups)."""
    from sklearn.model_selection import GroupKFold

    out = [""] * len(texts)
    n_groups = len(set(groups))
    folds = min(CROSS_FIT_FOLDS, n_groups)
    if folds < 2:
        return [y[0]] * len(texts)
    for train_idx, test_idx in GroupKFold(folds).split(texts, y, groups):
        preds = fit_predict(
            answer_type,
            [texts[i] for i in train_idx],
            [y[i] for i in train_idx],
            [texts[i] for i in test_idx],
            seed,
        )
        for i, p in zip(test_idx, preds, strict=True):
            out[i] = p
    return out


def _has_phrase(text: str, phrase: str) -> bool:
    phrase = phrase.strip().lower()
    if not phrase:
        return False
    return re.search(r"(?<![\w'])" + re.escape(phrase) + r"(?![\w'])", text.lower()) is not None


def gives_away(
    text: str,
    label: str,
    answer_type: str,
    aliases: Sequence[str] = (),
    label_words: Sequence[str] = (),
) -> str | None:
    """Why ``text`` gives the label away (the word found), or None.

    A ``label`` item's label or alias, any item's ``label_words``, as whole words; a ``text``
    item's gold answer as a run of tokens. (``yes``/``no`` themselves give nothing away.)
    """
    phrases = list(label_words)
    if answer_type == "label":
        phrases = [label, *aliases, *phrases]
    for phrase in phrases:
        if _has_phrase(text, phrase):
            return phrase
    if answer_type == "text":
        gold, seen = answer_tokens(label), answer_tokens(text)
        n = len(gold)
        if n and any(seen[i : i + n] == gold for i in range(len(seen) - n + 1)):
            return label
    return None


@dataclass
class HiddenTags:
    """The text-only reader's answers and the tag of each test item."""

    predictions: list[str]
    hidden: list[bool]
    reasons: list[str]  # "reader" (it got it right), "word: X", or "" (hidden)
    fitted_on: str  # "train items (N)" or "cross-fitted on the test items"


def tag_hidden(
    answer_type: str,
    test_texts: Sequence[str],
    test_labels: Sequence[str],
    test_groups: Sequence[str],
    correct_of: callable,
    train_texts: Sequence[str] = (),
    train_labels: Sequence[str] = (),
    aliases: Mapping[str, Sequence[str]] | None = None,
    label_words: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
) -> HiddenTags:
    """Fit the reader, score it with ``correct_of(prediction, index) -> bool`` (the suite's one
    scoring function), and tag every test item hidden or visible."""
    if train_texts:
        preds = fit_predict(answer_type, train_texts, train_labels, test_texts, seed)
        fitted_on = f"{len(train_texts)} train items"
    else:
        preds = cross_fit_predict(answer_type, test_texts, test_labels, test_groups, seed)
        fitted_on = "cross-fitted on the test items (no train items)"
    hidden, reasons = [], []
    for i, (text, label) in enumerate(zip(test_texts, test_labels, strict=True)):
        word = gives_away(
            text,
            label,
            answer_type,
            (aliases or {}).get(label, ()),
            (label_words or {}).get(label, ()),
        )
        if correct_of(preds[i], i):
            reasons.append("reader")
        elif word is not None:
            reasons.append(f"word: {word}")
        else:
            reasons.append("")
        hidden.append(reasons[-1] == "")
    return HiddenTags(preds, hidden, reasons, fitted_on)
