"""Measuring the target's steered replies: their perplexity under the unsteered target, and
what the oracle would read from a steered target (generation itself is
:mod:`oracle.steering.generate`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.capture import pad_id_of, pad_right
from oracle.errors import OracleInputError
from oracle.inputs import tokenize_input
from oracle.layers import model_device
from oracle.oracle import ActivationOracle
from oracle.positions import read_spec, select_positions
from oracle.steering.apply import check_apply, steer_mask
from oracle.steering.generate import as_target_input, generate, prompt_ids, steered_target
from oracle.steering.hooks import read_block


@torch.no_grad()
def reply_nll(
    ao: ActivationOracle,
    prompts: Sequence[str],
    replies: Sequence[str],
    batch_size: int = 8,
    system: str | None = None,
) -> list[float]:
    """Mean negative log-likelihood per token of each reply after its prompt (and the optional
    system prompt), under the unsteered target (exp of it is the reply's perplexity). An empty
    reply gives NaN."""
    if len(prompts) != len(replies):
        raise OracleInputError("give one reply per prompt")
    tok = ao.tokenizer
    rows = prompt_ids(tok, prompts, system)
    reply_rows = [tok.encode(r, add_special_tokens=False) if r else [] for r in replies]
    device = model_device(ao.target)
    out: list[float] = []
    for start in range(0, len(rows), batch_size):
        prompt_part = rows[start : start + batch_size]
        reply_part = reply_rows[start : start + batch_size]
        full = [p + r for p, r in zip(prompt_part, reply_part, strict=True)]
        ids_BT, mask_BT = pad_right(full, pad_id_of(tok))
        with ao.adapter_disabled():
            logits_BTV = ao.target(
                input_ids=ids_BT.to(device), attention_mask=mask_BT.to(device), use_cache=False
            ).logits.float()
        logp_BTV = logits_BTV.log_softmax(dim=-1)
        for b, (p, r) in enumerate(zip(prompt_part, reply_part, strict=True)):
            if not r:
                out.append(float("nan"))
                continue
            targets = torch.tensor(r, device=logp_BTV.device)
            # the logits at position t predict token t + 1
            picked = logp_BTV[b, len(p) - 1 : len(p) - 1 + len(r)].gather(1, targets[:, None])
            out.append(float(-picked.mean()))
    return out


def with_replies(
    ao: ActivationOracle, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 8
) -> list[list[dict[str, str]]]:
    """Each prompt as a conversation: the user turn and the unsteered target's greedy reply
    (empty replies are kept out: the oracle would have nothing of them to read)."""
    replies = generate(ao, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size)
    convs = conversations(prompts, replies)
    if not convs:
        raise OracleInputError("the target gave an empty reply to every prompt")
    return convs


def conversations(prompts: Sequence[str], replies: Sequence[str]) -> list[list[dict[str, str]]]:
    """Each (prompt, reply) as a user turn and an assistant turn; empty replies are left out."""
    return [
        [{"role": "user", "content": p}, {"role": "assistant", "content": r}]
        for p, r in zip(prompts, replies, strict=True)
        if r.strip()
    ]


@torch.no_grad()
def capture_steered(
    ao: ActivationOracle,
    prompts: Sequence[str | list[dict[str, str]]],
    read_layer: int,
    vector: torch.Tensor | None = None,
    layer: int | None = None,
    scale: float = 1.0,
    positions: str | None = None,
    adapter: str | None = None,
    apply: str = "all",
) -> list[torch.Tensor]:
    """What the oracle would read from each prompt with the target steered: block
    ``read_layer``'s output (n_positions, d_model) at ``positions`` (default: the oracle's).
    A prompt is a user turn awaiting the reply, or a whole conversation (chat messages).
    ``adapter``: a steering LoRA on the target to run with (as in :func:`generate`).
    ``apply="reply"``: the vector is added from the position before the first read token on;
    ``apply="first"``: at that position alone (as :func:`oracle.steering.steer` adds it)."""
    if vector is not None and layer is None:
        raise OracleInputError("a steering vector needs the layer it is added at")
    check_apply(apply)
    spec = positions or ao.config.positions
    out: list[torch.Tensor] = []
    device = model_device(ao.target)
    for prompt in prompts:
        target = as_target_input(ao.tokenizer, prompt)
        tok = tokenize_input(ao.tokenizer, target)
        chosen = select_positions(tok, read_spec(None, spec, target.prompt is not None))
        ids_BT = torch.tensor([tok.input_ids], device=device)
        width = ids_BT.shape[1]
        steer_BT = steer_mask(apply, width, [(max(0, min(chosen, default=0) - 1), width)])
        with steered_target(ao, adapter, vector, layer, scale, steer_BT):
            hidden_BTD = read_block(ao.target, ids_BT, None, read_layer)
        out.append(hidden_BTD[0, chosen].float().cpu())
    return out
