"""Pooled target activations of toy-world conversations, per read layer and position kind.

Helpers for the toy-world experiment scripts beside this file (not part of the library).

Position kinds of one conversation (rendered with the target's chat template):

- ``non_system``: every token after the system prompt (what the oracle reads), mean-pooled;
- ``user``: the user message's tokens, mean-pooled; ``user_last``: its last token;
- ``header``: the template tokens between the user message and the reply
  (``<|im_end|>\\n<|im_start|>assistant\\n``; only ``<|im_end|>\\n`` without a reply), mean;
- ``reply``: the reply's tokens, mean-pooled (missing without a reply);
- ``pre_hint``: the token just before the first hint word of the reply ("... rhymes with" |
  "chapel"), found by the hint templates' wording (``generator.hint_start``), never by the
  label (missing without a hint);
- ``last``: the conversation's last token.

Activations of the user and header tokens do not depend on the reply (causal attention), so a
conversation cut after the user turn has the same ``user``/``user_last`` features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.capture import hidden_at_layers, pad_right
from worlds.toy.generator import hint_start
from worlds.toy.world import World

KINDS = ("non_system", "user", "user_last", "header", "reply", "pre_hint", "last")


def _span(text: str, content: str, cursor: int) -> tuple[int, int]:
    start = text.index(content.strip(), cursor)
    return start, start + len(content.strip())


def kind_positions(
    tokenizer, messages: list[dict[str, str]], world: World
) -> tuple[list[int], dict]:
    """Token ids of the rendered chat and ``{kind: [token indices]}`` (empty when missing)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    cursor, spans = 0, {}
    for m in messages:
        spans[m["role"]] = _span(text, m["content"], cursor)
        cursor = spans[m["role"]][1]

    def inside(a: int, b: int) -> list[int]:
        return [i for i, (s, e) in enumerate(offsets) if s < b and e > a]

    sys_end = spans["system"][1] if "system" in spans else 0
    user = inside(*spans["user"])
    reply = inside(*spans["assistant"]) if "assistant" in spans else []
    header_end = spans["assistant"][0] if "assistant" in spans else len(text)
    header = inside(spans["user"][1], header_end)
    pre_hint: list[int] = []
    if "assistant" in spans:
        start = hint_start(world, messages[-1]["content"].strip())
        if start is not None:
            at = spans["assistant"][0] + start
            before = [i for i, (s, e) in enumerate(offsets) if e <= at and s >= header_end]
            pre_hint = before[-1:]
    non_system = [i for i, (s, _) in enumerate(offsets) if s >= sys_end]
    positions = {
        "non_system": non_system,
        "user": user,
        "user_last": user[-1:],
        "header": header,
        "reply": reply,
        "pre_hint": pre_hint,
        "last": [len(offsets) - 1],
    }
    return list(enc["input_ids"]), positions


@torch.no_grad()
def pooled_features(
    model,
    tokenizer,
    world: World,
    conversations: Sequence[list[dict[str, str]]],
    layers: Sequence[int] = (0, 1, 2, 3),
    batch_size: int = 64,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``feats[kind]`` (N, L, D) float16 (zeros where missing) and ``present[kind]`` (N,) bool."""
    items = [kind_positions(tokenizer, m, world) for m in conversations]
    n, n_layers = len(items), len(layers)
    d = model.config.hidden_size
    feats = {k: torch.zeros(n, n_layers, d, dtype=torch.float16) for k in KINDS}
    present = {k: torch.zeros(n, dtype=torch.bool) for k in KINDS}
    order = sorted(range(n), key=lambda i: len(items[i][0]))
    pad = tokenizer.pad_token_id or 0
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        ids_BT, mask_BT = pad_right([items[i][0] for i in idx], pad)
        seen = hidden_at_layers(model, ids_BT, mask_BT, list(layers))
        h_BLTD = torch.stack([seen[layer] for layer in layers], 1).float()
        for b, i in enumerate(idx):
            for kind, pos in items[i][1].items():
                if pos:
                    feats[kind][i] = h_BLTD[b][:, pos].mean(1).half()
                    present[kind][i] = True
    return feats, present


def between_class_share(x_ND: torch.Tensor, y_N: torch.Tensor) -> dict[str, float]:
    """How much of the activations' size the label accounts for: the between-class variance
    (mean squared distance of each row's class mean from the overall mean) as a share of the
    total variance and of the mean squared norm (what a norm-matched injection scales by)."""
    x = x_ND.double()
    mean_D = x.mean(0)
    total = (x - mean_D).pow(2).sum(1).mean()
    class_means_CD = torch.stack(
        [x[y_N == c].mean(0) if (y_N == c).any() else mean_D for c in range(int(y_N.max()) + 1)]
    )
    between = (class_means_CD[y_N] - mean_D).pow(2).sum(1).mean()
    return {
        "of_variance": round(float(between / total), 4),
        "of_squared_norm": round(float(between / x.pow(2).sum(1).mean()), 5),
    }
