"""Contrastive activation addition (CAA): the cheapest steering that works, as a baseline.

The vector is a mean difference of the target's activations at block ``layer`` with and
without ``persona_prompt`` (as the system prompt), over one of two contrasts (``read``):

- ``reply`` (the default): the target's greedy reply to each prompt written with the persona
  prompt, against its reply written without it, both read after the prompt alone (no system
  prompt), mean over each reply's tokens: the difference the persona makes to what the model
  says, where the features that drive generation live;
- ``prompt``: each prompt read after the persona prompt against the same prompt without it,
  over the tokens both share (the user's turn and the assistant header).

On SmolLM2-135M-Instruct the ``prompt`` contrast moved no reply of a pirate to its style words
at any layer from 6 to 15 and scale up to 8 before the replies broke, where the ``reply``
contrast did (``results/steering_compare/smol/caa_sweep.md``). No oracle and no
optimisation; added with the same apply modes and scale choice as a vector optimised through
the oracle (:mod:`oracle.steering.choose`), and saved in the same file format.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.errors import OracleInputError
from oracle.inputs import has_chat_template, tokenize_input
from oracle.layers import check_layer, model_device
from oracle.oracle import ActivationOracle
from oracle.steering.generate import as_target_input, generate, prompt_ids
from oracle.steering.hooks import read_block

CONTRASTS = ("reply", "prompt")


@torch.no_grad()
def caa_vector(
    ao: ActivationOracle,
    prompts: Sequence[str],
    persona_prompt: str,
    layer: int,
    read: str = "reply",
    reply_tokens: int = 32,
) -> torch.Tensor:
    """(d_model,) the mean difference with and without the persona prompt (see the module):
    over the replies each way (``read="reply"``, replies of at most ``reply_tokens``) or over
    the prompt tokens both share (``read="prompt"``)."""
    if not has_chat_template(ao.tokenizer):
        raise OracleInputError("the caa method needs a chat template (a system prompt to add)")
    if not prompts:
        raise OracleInputError("give at least one prompt")
    if read not in CONTRASTS:
        raise OracleInputError(f"caa reads 'reply' or 'prompt', not {read!r}")
    layer = check_layer(ao.target, layer)
    if read == "reply":
        return _reply_contrast(ao, list(prompts), persona_prompt, layer, reply_tokens)
    device = model_device(ao.target)
    diffs = []
    with ao.adapter_disabled():
        for prompt in prompts:
            rows = []
            for system in (persona_prompt, None):
                target = as_target_input(ao.tokenizer, prompt, system)
                ids = tokenize_input(ao.tokenizer, target).input_ids
                rows.append(torch.tensor([ids], device=device))
            # the tokens after the system prompt (the user turn and the header) are the same
            # text at the end of both rows: compare them position by position
            shared = _shared_tail(rows[0][0].tolist(), rows[1][0].tolist())
            with_h = read_block(ao.target, rows[0], None, layer)[0, -shared:].float()
            without_h = read_block(ao.target, rows[1], None, layer)[0, -shared:].float()
            diffs.append((with_h - without_h).mean(0))
    return torch.stack(diffs).mean(0).cpu()


def _reply_contrast(
    ao: ActivationOracle, prompts: list[str], persona_prompt: str, layer: int, reply_tokens: int
) -> torch.Tensor:
    told = generate(ao, prompts, max_new_tokens=reply_tokens, system=persona_prompt)
    plain = generate(ao, prompts, max_new_tokens=reply_tokens)
    rows = prompt_ids(ao.tokenizer, prompts)  # both replies read without a system prompt
    device = model_device(ao.target)

    def mean_over_replies(replies: list[str]) -> torch.Tensor | None:
        means = []
        with ao.adapter_disabled():
            for ids, reply in zip(rows, replies, strict=True):
                reply_ids = ao.tokenizer.encode(reply, add_special_tokens=False)
                if not reply_ids:
                    continue
                full = torch.tensor([ids + reply_ids], device=device)
                means.append(
                    read_block(ao.target, full, None, layer)[0, len(ids) :].float().mean(0)
                )
        return torch.stack(means).mean(0) if means else None

    with_persona, without = mean_over_replies(told), mean_over_replies(plain)
    if with_persona is None or without is None:
        raise OracleInputError("the target gave an empty reply to every prompt")
    return (with_persona - without).cpu()


def _shared_tail(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    if n == 0:
        raise OracleInputError("the prompt with and without the persona share no final tokens")
    return n
