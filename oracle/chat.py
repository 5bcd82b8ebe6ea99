"""The target's next assistant turn for chat conversations, as token rows, with streaming.

What an OpenAI-style chat endpoint needs beyond :func:`oracle.steering.generate.generate`:
whole conversations (system prompt and earlier turns included) through the chat template with
the generation prompt, stop strings, each reply's token count and why it ended, and the text
as it grows, row by row, for streaming. The target runs as its base model (the oracle adapter
off), optionally with a steering vector, exactly as ``generate`` runs it: a greedy reply here
equals ``generate``'s for the same conversation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers.generation.streamers import BaseStreamer

from oracle.capture import pad_id_of
from oracle.errors import OracleInputError
from oracle.generation import pad_left, sampling_kwargs
from oracle.inputs import TargetInput, tokenize_input
from oracle.layers import model_device
from oracle.oracle import ActivationOracle
from oracle.steering.apply import apply_mode, check_apply
from oracle.steering.generate import _check_generation, _steered
from oracle.steering.hooks import finite_logits

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
    :func:`oracle.steering.generate.generate` adds it (``apply``). A row ends at EOS, at a
    stop string (cut before it) or after ``max_new_tokens``. ``on_text(row, delta)`` is
    called from this thread as each row's text grows; the deltas of a row add up to its
    reply's text."""
    _check_generation(max_new_tokens, temperature, top_p)
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
    with _steered(ao, None, vector, layer, scale, steer_BT, mode.decode) as stack:
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
