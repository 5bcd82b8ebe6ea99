"""The target's generation, in one module: replies to prompts (:func:`generate`, one batch at a
time with :class:`GenerationRun`) and the next assistant turn of whole conversations, streamed
(:func:`generate_chat`, what an OpenAI-style chat endpoint needs), each optionally steered.

The target runs as its base model (the oracle adapter off), or with a steering LoRA, and with
``scale * vector`` added at a block (:func:`steered_target`): a greedy chat reply equals
``generate``'s for the same conversation. A prompt is sent as one user turn with the generation
prompt when the tokenizer has a chat template, as plain text otherwise. Measuring steered
replies (perplexity, what the oracle reads) is :mod:`oracle.steering.measure`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass

import torch
from transformers.generation.streamers import BaseStreamer

from oracle.capture import pad_id_of
from oracle.errors import OracleInputError
from oracle.generation import generate_texts, pad_left, sampling_kwargs
from oracle.inputs import TargetInput, has_chat_template, tokenize_input
from oracle.layers import model_device
from oracle.oracle import ActivationOracle
from oracle.steering.apply import apply_mode, check_apply
from oracle.steering.hooks import active_adapter, add_vector, finite_logits


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


def check_generation(max_new_tokens: int, temperature: float, top_p: float) -> None:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise OracleInputError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not math.isfinite(temperature) or temperature < 0:
        raise OracleInputError(f"temperature must be a finite number >= 0, got {temperature!r}")
    if not 0 < top_p <= 1:
        raise OracleInputError(f"top_p must be in (0, 1], got {top_p!r}")


def steered_target(
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
        check_generation(max_new_tokens, temperature, top_p)
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
        stack = steered_target(
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


# (row of the batch, text added to that row's reply since the last call)
OnText = Callable[[int, str], None]


@dataclass
class ChatReply:
    """One generated assistant turn."""

    text: str  # decoded, special tokens skipped, stripped, cut before a stop string
    prompt_tokens: int  # tokens the target read
    completion_tokens: int  # tokens generated (the EOS included)
    finish_reason: str  # "stop" (EOS or a stop string) or "length" (max_new_tokens reached)


def chat_ids(tokenizer, messages: Sequence[dict[str, str]]) -> list[int]:
    """Token ids of a conversation awaiting the assistant's next turn (the chat template with
    its generation prompt)."""
    target = TargetInput(messages=[dict(m) for m in messages], add_generation_prompt=True)
    return tokenize_input(tokenizer, target).input_ids


def _clean(text: str, stop: Sequence[str], final: bool) -> tuple[str, bool]:
    """The reply as shown so far: cut before the first stop string, stripped; while it grows,
    held back where it ends in part of a character or the start of a stop string, so that
    what was shown is always a prefix of the final text. Returns (text, a stop string found)."""
    cut = min((i for i in (text.find(s) for s in stop) if i >= 0), default=-1)
    if cut >= 0:
        return text[:cut].strip(), True
    if not final:
        text = text.rstrip("\ufffd")
        for s in stop:
            for k in range(min(len(s) - 1, len(text)), 0, -1):
                if text.endswith(s[:k]):
                    text = text[:-k]
                    break
        return text.strip(), False
    return text.strip(), False


class _Rows(BaseStreamer):
    """Follows each row of a batch as ``generate`` streams its tokens (the prompt first, then
    one token per row per step) and reports each row's new text."""

    def __init__(self, tokenizer, n: int, stop: Sequence[str], on_text: OnText | None) -> None:
        self.tokenizer, self.stop, self.on_text = tokenizer, list(stop), on_text
        self.ids: list[list[int]] = [[] for _ in range(n)]
        self.ended = [False] * n  # EOS generated
        self.stopped = [False] * n  # a stop string generated
        self.shown = [""] * n
        self.eos = tokenizer.eos_token_id
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:  # the first call carries the prompt ids (B, T)
            self._prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            if self.ended[row] or self.stopped[row]:
                continue
            if token == self.eos:
                self.ended[row] = True
                continue
            self.ids[row].append(token)
            self._show(row, final=False)

    def end(self) -> None:
        for row in range(len(self.ids)):
            self._show(row, final=True)

    def text(self, row: int, final: bool) -> tuple[str, bool]:
        raw = self.tokenizer.decode(self.ids[row], skip_special_tokens=True)
        return _clean(raw, self.stop, final)

    def _show(self, row: int, final: bool) -> None:
        text, stopped = self.text(row, final or self.ended[row])
        self.stopped[row] = self.stopped[row] or stopped
        if text.startswith(self.shown[row]) and len(text) > len(self.shown[row]):
            delta, self.shown[row] = text[len(self.shown[row]) :], text
            if self.on_text is not None:
                self.on_text(row, delta)


@torch.no_grad()
def generate_chat(
    ao: ActivationOracle,
    rows: Sequence[list[int]],
    max_new_tokens: int = 32,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int | None = None,
    stop: Sequence[str] = (),
    vector: torch.Tensor | None = None,
    layer: int | None = None,
    scale: float = 1.0,
    apply: str = "all",
    on_text: OnText | None = None,
) -> list[ChatReply]:
    """The target's next turn after each token row (:func:`chat_ids`), in one left-padded
    batch: greedy at temperature 0, else sampled (``seed`` seeds torch first); optionally
    with ``scale * vector`` (d_model,) added at block ``layer`` as
    :func:`generate` adds it (``apply``). A row ends at EOS, at a
    stop string (cut before it) or after ``max_new_tokens``. ``on_text(row, delta)`` is
    called from this thread as each row's text grows; the deltas of a row add up to its
    reply's text."""
    check_generation(max_new_tokens, temperature, top_p)
    if not rows or any(not r for r in rows):
        raise OracleInputError("give at least one non-empty token row")
    if vector is not None and layer is None:
        raise OracleInputError("a steering vector needs the layer it is added at")
    check_apply(apply)
    stop = [s for s in stop if s]
    tok, model = ao.tokenizer, ao.target
    if seed is not None:
        torch.manual_seed(seed)
    pad_id = pad_id_of(tok)
    ids_BT, mask_BT, _ = pad_left(list(rows), pad_id)
    width = ids_BT.shape[1]  # left padding: every prompt ends in the last column
    mode = apply_mode(apply)
    steer_BT = mode.mask(width, [(width - 1, width)] * len(rows))
    follow = _Rows(tok, len(rows), stop, on_text)
    options = dict(stop_strings=stop, tokenizer=tok) if stop else {}
    with steered_target(ao, None, vector, layer, scale, steer_BT, mode.decode) as stack:
        if vector is not None:
            stack.enter_context(finite_logits(model))
        device = model_device(model)
        model.generate(
            input_ids=ids_BT.to(device),
            attention_mask=mask_BT.to(device),
            max_new_tokens=max_new_tokens,
            pad_token_id=pad_id,
            eos_token_id=tok.eos_token_id,
            streamer=follow,
            **sampling_kwargs(temperature, top_p),
            **options,
        )
    replies = []
    for row, prompt in enumerate(rows):
        text, stopped = follow.text(row, final=True)
        ended = follow.ended[row]
        replies.append(
            ChatReply(
                text=text,
                prompt_tokens=len(prompt),
                completion_tokens=len(follow.ids[row]) + int(ended),
                finish_reason="stop" if ended or stopped else "length",
            )
        )
    return replies
