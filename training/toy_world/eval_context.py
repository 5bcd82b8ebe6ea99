"""Context prediction on held-out user messages: the oracle against a probe and the prior.

Items follow Activation Oracles: read a window of 1..4 tokens of the user's message (the
target's activations there), give the 1..3 tokens just before or just after the window. The
oracle is asked in training wordings and in held-out ones; every answer is scored by exact
match and token-F1 (``questions.exact_match`` / ``token_f1``), beside:

- the text-free prior: the most common answer of the training items of the same direction and
  length (what an oracle that ignores the activations would best say);
- a linear probe: one multinomial regression per answer token over the window's first, last
  and mean vectors, fitted on as many training items as given.
"""

from __future__ import annotations

from collections import Counter

import torch

from oracle.inputs import TargetInput
from training.builders.context import ContextItem, context_items
from training.toy_world import questions as Q
from training.toy_world.probe import fit_probe, read_features, window_summary


def score(answers: list[str], items: list[ContextItem]) -> dict:
    """Exact match and token-F1, overall and per direction."""
    out = {}
    for name in ("all", "previous", "next"):
        pairs = [
            (a, it.answer)
            for a, it in zip(answers, items, strict=True)
            if name == "all" or it.direction == name
        ]
        n = max(1, len(pairs))
        out[name] = {
            "exact": round(sum(Q.exact_match(a, g) for a, g in pairs) / n, 4),
            "f1": round(sum(Q.token_f1(a, g) for a, g in pairs) / n, 4),
            "n": len(pairs),
        }
    return out


def prior_answers(train: list[ContextItem], test: list[ContextItem]) -> list[str]:
    counts: dict[tuple[str, int], Counter] = {}
    for it in train:
        counts.setdefault((it.direction, it.k), Counter())[it.answer] += 1
    fallback = Counter(it.answer for it in train).most_common(1)[0][0]
    return [
        counts[(it.direction, it.k)].most_common(1)[0][0]
        if (it.direction, it.k) in counts
        else fallback
        for it in test
    ]


def probe_answers(
    tokenizer, train: list[ContextItem], train_x: torch.Tensor, test: list[ContextItem], test_x
) -> list[str]:
    """One regression per answer slot, over the token ids seen there in training."""
    answers: list[list[int]] = [[] for _ in test]
    for slot in range(max(it.k for it in test)):
        rows = [i for i, it in enumerate(train) if it.k > slot]
        if not rows:
            break
        y_tok = [train[i].answer_ids[slot] for i in rows]
        vocab = sorted(set(y_tok))
        y_N = torch.tensor([vocab.index(t) for t in y_tok])
        probe = fit_probe(train_x[rows], y_N, len(vocab), grid=(1e-3, 1e-2, 1e-1))
        pred_N = probe.predict(test_x)
        for i, it in enumerate(test):
            if it.k > slot:
                answers[i].append(vocab[int(pred_N[i])])
    return [tokenizer.decode(a).strip() for a in answers]


def window_acts(ao, items: list[ContextItem], layer: int, batch_size: int) -> list[torch.Tensor]:
    with ao.adapter_disabled():
        return read_features(
            ao.target,
            ao.tokenizer,
            [TargetInput(messages=it.messages) for it in items],
            layer,
            [it.window for it in items],
            batch_size,
        )


def evaluate_context(
    ao,
    test_conversations: list[dict],
    train_conversations: list[dict],
    layer: int,
    n_test: int = 400,
    n_fit: int = 8000,
    seed: int = 13,
    batch_size: int = 64,
) -> dict:
    """Context prediction on the user messages of ``test_conversations`` (held out), with the
    probe and prior fitted on ``n_fit`` items of ``train_conversations``."""
    tok = ao.tokenizer
    test = context_items([c["messages"] for c in test_conversations], tok, n_test, seed=seed)
    train = context_items([c["messages"] for c in train_conversations], tok, n_fit, seed=seed + 1)
    test_acts = window_acts(ao, test, layer, batch_size)
    train_x = torch.stack([window_summary(a) for a in window_acts(ao, train, layer, batch_size)])
    test_x = torch.stack([window_summary(a) for a in test_acts])
    out: dict = {"n": len(test), "n_probe_fit": len(train)}
    out["prior"] = score(prior_answers(train, test), test)
    out["probe"] = score(probe_answers(tok, train, train_x, test, test_x), test)
    for split in ("train", "heldout"):
        questions = []
        for j, it in enumerate(test):
            wordings = Q.QUESTIONS[f"context_{it.direction}"][split]
            questions.append(wordings[j % len(wordings)].format(k=it.k))
        answers = ao.answer(test_acts, questions, layer, max_new_tokens=8, batch_size=batch_size)
        out[split] = score(answers, test)
        out[split]["examples"] = [
            {"question": q, "gold": it.answer, "answer": a}
            for q, it, a in list(zip(questions, test, answers, strict=True))[:10]
        ]
    return out
