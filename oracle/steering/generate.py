"""Target generation with an optional steering vector, and reply perplexity under the target.

Both run the target as its base model (the oracle adapter off). A prompt is sent as one user
turn with the generation prompt when the tokenizer has a chat template, as plain text otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import ExitStack

import torch

from oracle.capture import pad_id_of, pad_right
from oracle.errors import OracleInputError
from oracle.generation import generate_texts
from oracle.inputs import TargetInput, has_chat_template, tokenize_input
from oracle.layers import model_device
from oracle.oracle import ActivationOracle
from oracle.positions import read_spec, select_positions
from oracle.steering.apply import apply_mode, check_apply, steer_mask
from oracle.steering.hooks import active_adapter, add_vector, finite_logits, read_block


def as_target_input(
    tokenizer, prompt: str | list[dict[str, str]], system: str | None = None
) -> TargetInput:
    """A user turn (after an optional system prompt) awaiting the assistant's reply, through
    the chat template; the plain prompt for a tokenizer without one. A list of chat messages
    is a whole conversation, read as it stands (replies included)."""
    if isinstance(prompt, list):
        if system:
            raise OracleInputError("a conversation carries its own system prompt, if any")
        return TargetInput(messages=list(prompt))
    if not isinstance(prompt, str) or not prompt.strip():
        raise OracleInputError("a prompt is empty")
    if has_chat_template(tokenizer):
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        return TargetInput(messages=messages, add_generation_prompt=True)
    if system:
        raise OracleInputError("a system prompt needs a tokenizer with a chat template")
    return TargetInput(prompt=prompt)


def prompt_ids(tokenizer, prompts: Sequence[str], system: str | None = None) -> list[list[int]]:
    """Token ids of each prompt as the target reads it (see :func:`as_target_input`)."""
    if isinstance(prompts, str) or not prompts:
        raise OracleInputError("give a non-empty list of prompts")
    return [
        tokenize_input(tokenizer, as_target_input(tokenizer, p, system)).input_ids for p in prompts
    ]


def _check_generation(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise OracleInputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise OracleInputError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not 0 < top_p <= 1:
        raise OracleInputError(f"top_p must be in (0, 1], got {top_p!r}")


def _steered(
    ao: ActivationOracle,
    adapter: str | None,
    vector: torch.Tensor | None,
    layer: int | None,
    scale: float,
    steer_BT: torch.Tensor | None,
    decode: bool = True,
) -> ExitStack:
    """The target as steered: the steering LoRA ``adapter`` on (else every adapter off), and
    ``scale * vector`` added at block ``layer`` where ``steer_BT`` is 1 (everywhere if None;
    on decode steps too unless ``decode`` is False, see :func:`add_vector`)."""
    stack = ExitStack()
    try:
        if adapter is None:
            stack.enter_context(ao.adapter_disabled())
        else:
            stack.enter_context(active_adapter(ao.target, adapter))
        if vector is not None:
            device = model_device(ao.target)
            stack.enter_context(
                add_vector(
                    ao.target, layer, vector.to(device), scale, mask_BT=steer_BT, decode=decode
                )
            )
    except BaseException:
        stack.close()
        raise
    return stack


class GenerationRun:
    """:func:`generate`, one batch of prompts per :meth:`step`, so that a server can run other
    work between batches and stop between them. Seeded sampling gives the replies of one
    :func:`generate` call: the random state is kept from one step to the next.

    >>> run = GenerationRun(ao, prompts, max_new_tokens=16)
    >>> while not run.finished:
    ...     run.step()
    >>> run.replies
    """

    def __init__(
        self,
        ao: ActivationOracle,
        prompts: Sequence[str],
        vector: torch.Tensor | None = None,
        layer: int | None = None,
        scale: float = 1.0,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        batch_size: int = 8,
        adapter: str | None = None,
        system: str | None = None,
        apply: str = "all",
    ) -> None:
        _check_generation(max_new_tokens, temperature, top_p)
        if vector is not None and layer is None:
            raise OracleInputError("a steering vector needs the layer it is added at")
        if batch_size < 1:
            raise OracleInputError("batch_size must be >= 1")
        check_apply(apply)
        self.ao, self.vector, self.layer, self.scale = ao, vector, layer, scale
        self.adapter, self.mode = adapter, apply_mode(apply)
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.seed, self.batch_size = seed, batch_size
        self.rows = prompt_ids(ao.tokenizer, prompts, system)
        self.replies: list[str] = []
        self._rng: tuple | None = None  # the random state between seeded steps

    @property
    def finished(self) -> bool:
        return len(self.replies) >= len(self.rows)

    def _steered(self, _start: int, ids_BT: torch.Tensor, _shifts: list[int]) -> ExitStack:
        width = ids_BT.shape[1]  # left padding: every prompt ends in the last column
        steer_BT = self.mode.mask(width, [(width - 1, width)] * len(ids_BT))
        stack = _steered(
            self.ao, self.adapter, self.vector, self.layer, self.scale, steer_BT, self.mode.decode
        )
        if self.vector is not None or self.adapter is not None:
            try:
                stack.enter_context(finite_logits(self.ao.target))
            except BaseException:
                stack.close()
                raise
        return stack

    @torch.no_grad()
    def step(self) -> list[str]:
        """Generate the next batch of replies; returns them (also appended to ``replies``)."""
        start = len(self.replies)
        if self.finished:
            return []
        if self.seed is not None:
            if self._rng is None:
                torch.manual_seed(self.seed)
            else:
                _set_rng(self._rng)
        texts = generate_texts(
            self.ao.target,
            self.ao.tokenizer,
            self.rows[start : start + self.batch_size],
            self.max_new_tokens,
            self.temperature,
            self.top_p,
            None,
            self.batch_size,
            context=self._steered,
        )
        if self.seed is not None:
            self._rng = _get_rng()
        self.replies += texts
        return texts


def _get_rng() -> tuple:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def _set_rng(state: tuple) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def generate(
    ao: ActivationOracle,
    prompts: Sequence[str],
    vector: torch.Tensor | None = None,
    layer: int | None = None,
    scale: float = 1.0,
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    batch_size: int = 8,
    adapter: str | None = None,
    system: str | None = None,
    apply: str = "all",
) -> list[str]:
    """The target's reply to each prompt, with ``scale * vector`` (d_model,) added at block
    ``layer`` at every position (prompt and generated tokens), or with ``apply="reply"`` from
    the prompt's last position on (the reply's tokens), or with ``apply="first"`` at that
    position alone (the reply's start; later tokens read it through attention). Greedy when
    temperature is 0.

    ``adapter``: the name of a steering LoRA on the target to run with (instead of the base
    model with every adapter off). ``system``: an optional system prompt before each prompt.
    Steered outputs that are not finite (a vector too large for the model's numbers) raise
    :class:`OracleInputError`.
    """
    run = GenerationRun(
        ao, prompts, vector, layer, scale, max_new_tokens, temperature, top_p, seed,
        batch_size, adapter, system, apply,
    )  # fmt: skip
    while not run.finished:
        run.step()
    return run.replies


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
        with _steered(ao, adapter, vector, layer, scale, steer_BT):
            hidden_BTD = read_block(ao.target, ids_BT, None, read_layer)
        out.append(hidden_BTD[0, chosen].float().cpu())
    return out
