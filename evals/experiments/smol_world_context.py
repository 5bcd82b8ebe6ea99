"""Baselines of the SmolLM2 world's context-prediction items (see smol_world_eval.py).

- a linear probe: from the read window's activations (mean and last position), one logistic
  regression per answer token (k of them), fitted on windows of the training replies;
- the target reading the visible text: the window's own tokens given to the base model as a
  plain prompt, greedy continuation of k tokens (for "next" items only: a causal model has no
  way to produce what came before).
"""

from __future__ import annotations

import numpy as np
import torch


def features(vectors: list[dict[int, torch.Tensor]], layer: int) -> np.ndarray:
    """Mean-pooled and last-position vectors side by side: (N, 2D)."""
    return np.stack([torch.cat([v[layer].mean(0), v[layer][-1]]).numpy() for v in vectors]).astype(
        np.float32
    )


def context_probe(ao, items, vecs, train_items, train_vecs, layer: int, k: int = 4) -> list:
    """Answers of a per-position token probe for context items (None elsewhere)."""
    from sklearn.linear_model import LogisticRegression

    tok = ao.tokenizer
    out: list = [None] * len(items)
    for family in ("context_next", "context_previous"):
        tr = [i for i, it in enumerate(train_items) if it["family"] == family]
        te = [i for i, it in enumerate(items) if it["family"] == family]
        if not tr or not te:
            continue
        x_tr = features([train_vecs[i] for i in tr], layer)
        x_te = features([vecs[i] for i in te], layer)
        mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6
        x_tr, x_te = (x_tr - mean) / std, (x_te - mean) / std
        golds = [tok(train_items[i]["gold"], add_special_tokens=False)["input_ids"] for i in tr]
        predicted = np.zeros((len(te), k), dtype=np.int64)
        for j in range(k):
            y = np.array([g[j] if j < len(g) else tok.eos_token_id for g in golds])
            if len(set(y.tolist())) == 1:
                predicted[:, j] = y[0]
                continue
            model = LogisticRegression(C=0.1, max_iter=300).fit(x_tr, y)
            predicted[:, j] = model.predict(x_te)
        for row, i in enumerate(te):
            ids = [t for t in predicted[row].tolist() if t != tok.eos_token_id]
            out[i] = tok.decode(ids, skip_special_tokens=True).strip()
    return out


@torch.no_grad()
def target_reads_text(ao, items, k: int = 4) -> list:
    """The base model's greedy k-token continuation of the window's text ("next" items)."""
    tok = ao.tokenizer
    out: list = [None] * len(items)
    for i, it in enumerate(items):
        if it["family"] == "context_previous":
            out[i] = ""  # scored as a miss: the visible window says nothing of what preceded it
        if it["family"] != "context_next":
            continue
        width = int(it["read_span"].split(":")[1])
        ids = tok(it["text"], add_special_tokens=False)["input_ids"][-width:]
        with ao.adapter_disabled():
            gen = ao.target.generate(
                input_ids=torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=k,
                do_sample=False,
                pad_token_id=tok.pad_token_id,
            )
        out[i] = tok.decode(gen[0, len(ids) :], skip_special_tokens=True).strip()
    return out
