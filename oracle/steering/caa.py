"""Contrastive activation addition (CAA): the cheapest steering that works, as a baseline.

The vector is the mean difference of the target's activations at block ``layer`` between each
prompt read after ``persona_prompt`` (as the system prompt) and the same prompt without it,
over the tokens both share: the user's turn and the assistant header, where the reply is about
to start. No oracle and no optimisation; added with the same apply modes and scale choice as
a vector optimised through the oracle (:mod:`oracle.steering.choose`), and saved in the same
file format.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from oracle.errors import OracleInputError
from oracle.inputs import has_chat_template, tokenize_input
from oracle.layers import check_layer, model_device
from oracle.oracle import ActivationOracle
from oracle.steering.generate import as_target_input
from oracle.steering.hooks import read_block


@torch.no_grad()
def caa_vector(
    ao: ActivationOracle, prompts: Sequence[str], persona_prompt: str, layer: int
) -> torch.Tensor:
    """(d_model,) mean over prompts and shared positions of h(with persona) - h(without)."""
    if not has_chat_template(ao.tokenizer):
        raise OracleInputError("the caa method needs a chat template (a system prompt to add)")
    if not prompts:
        raise OracleInputError("give at least one prompt")
    layer = check_layer(ao.target, layer)
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


def _shared_tail(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    if n == 0:
        raise OracleInputError("the prompt with and without the persona share no final tokens")
    return n
