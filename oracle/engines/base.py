"""The engine interface: what serving, audit and evals call, never transformers or vLLM directly.

An engine owns a target and an oracle and does two things in batches: capture activations from
target inputs, and answer questions about activation sets. :meth:`Engine.query` is the one
capture-then-answer path (the CLI, the library and the service build on it). Engines that hold
the target in transformers (``hf``, and ``vllm`` beside vLLM) also generate the target's
replies, steered or not, run steering optimisations and the baselines that need the target
itself; others refuse those with a clear error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from oracle.capture import Capture, PreparedInput, pad_id_of, prepare_input
from oracle.config import OracleConfig
from oracle.errors import OracleInputError
from oracle.inputs import TargetInput

if TYPE_CHECKING:
    from oracle.oracle import ActivationOracle
    from oracle.steering.choose import UseChooser
    from oracle.steering.config import SteerConfig
    from oracle.steering.generate import ChatReply, GenerationRun
    from oracle.steering.io import SteeringVector
    from oracle.steering.run import SteeringRun


@dataclass
class CaptureRequest:
    """Read ``layers`` (default: the oracle's default layer) at ``positions`` of ``input``.

    ``prepared``: the input already tokenised, checked and its positions chosen
    (:meth:`Engine.prepare_capture`); the capture then runs only the forward pass.
    """

    input: TargetInput
    layers: list[int] | None = None
    positions: str | None = None
    prepared: PreparedInput | None = None


@dataclass
class AnswerRequest:
    """One question about one activation set (n_positions, d_model), read from ``layer``."""

    activations: torch.Tensor
    question: str
    layer: int | None = None
    max_new_tokens: int = 32
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    yes_no: bool = False


@dataclass
class Answer:
    text: str
    p_yes: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict = field(default_factory=dict)


class Engine(ABC):
    """Capture and answer, in batches. Implementations: ``hf`` (transformers), ``vllm``."""

    name: str = "base"
    config: OracleConfig
    d_model: int
    n_layers: int
    target_name: str

    @abstractmethod
    def capture(self, requests: Sequence[CaptureRequest]) -> list[Capture]:
        """One :class:`Capture` per request, in order."""

    @abstractmethod
    def answer(self, requests: Sequence[AnswerRequest]) -> list[Answer]:
        """One :class:`Answer` per request, in order."""

    # ------------------------------------------------------------------ answering
    continuous_batching: bool = False  # answers join a running batch from any thread (vllm)

    def submit(self, requests: Sequence[AnswerRequest]) -> list[Future]:
        """Start answering: one future per request, resolving to its :class:`Answer`.

        An engine with continuous batching returns at once; this default answers the whole
        list first (an invalid request raises here, before any future exists).
        """
        futures = []
        for answer in self.answer(requests):
            future: Future = Future()
            future.set_result(answer)
            futures.append(future)
        return futures

    def answer_logprobs(
        self, requests: Sequence[AnswerRequest], answers: Sequence[str]
    ) -> list[float]:
        """log P(``answers[i]`` | request i) under the oracle, teacher-forced (the answer's
        own probability is its exp): by the transformers copy, so that every engine scores
        alike."""
        ao = self.transformers_oracle()
        out: list[float | None] = [None] * len(requests)
        layers = {r.layer for r in requests}
        for layer in layers:
            idx = [i for i, r in enumerate(requests) if r.layer == layer]
            scores = ao.answer_logprobs(
                [requests[i].activations for i in idx],
                [requests[i].question for i in idx],
                [answers[i] for i in idx],
                layer,
            )
            for i, score in zip(idx, scores, strict=True):
                out[i] = score
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ capture, then answer
    def capture_request(
        self, target_input: TargetInput, layer: int | None = None, positions: str | None = None
    ) -> CaptureRequest:
        """What :meth:`query` captures: ``layer`` (default: the oracle's) at ``positions``
        (default: the oracle's; a plain prompt then reads all, see
        :func:`oracle.positions.read_spec`)."""
        layer = self.config.default_layer if layer is None else layer
        return CaptureRequest(target_input, [layer], positions)

    def prepare_capture(
        self, request: CaptureRequest, max_tokens: int | None = None
    ) -> CaptureRequest:
        """Tokenise ``request``'s input, refuse it beyond ``max_tokens`` tokens, then choose its
        positions (as :meth:`capture` would read them): the capture's work before the forward
        pass, which a server does on a thread of its own, off the engine's. Sets
        ``request.prepared`` and returns ``request``."""
        from oracle.positions import read_spec

        tokenizer = self.transformers_oracle().tokenizer
        spec = read_spec(request.positions, self.config.positions, request.input.prompt is not None)
        request.prepared = prepare_input(tokenizer, request.input, spec, max_tokens)
        return request

    @staticmethod
    def answer_requests(
        capture: Capture, questions: Sequence[str], **options: Any
    ) -> list[AnswerRequest]:
        """One request per question about the first layer of ``capture``; ``options`` are
        :class:`AnswerRequest` fields (max_new_tokens, temperature, yes_no, ...)."""
        if not questions:
            raise OracleInputError("give at least one question")
        acts_PD = capture.activations[0]
        return [AnswerRequest(acts_PD, q, capture.layers[0], **options) for q in questions]

    def query(
        self,
        target_input: TargetInput | str | list[dict[str, str]],
        questions: Sequence[str],
        layer: int | None = None,
        positions: str | None = None,
        **options: Any,
    ) -> tuple[Capture, list[Answer]]:
        """Capture once, then answer every question about that capture."""
        if not questions:
            raise OracleInputError("give at least one question")
        request = self.capture_request(TargetInput.coerce(target_input), layer, positions)
        cap = self.capture([request])[0]
        return cap, self.answer(self.answer_requests(cap, questions, **options))

    # ------------------------------------------------------------------ the target itself
    def transformers_oracle(self) -> ActivationOracle:
        """The :class:`~oracle.oracle.ActivationOracle` an engine keeps in transformers, for
        the methods below; engines without one refuse them."""
        raise OracleInputError(
            f"this needs an engine that holds the target in transformers ('hf' or 'vllm'); "
            f"this one is {self.name!r}"
        )

    @property
    def target_tokenizer(self):
        """The target's tokenizer (to encode a label, show a read window as text)."""
        return self.transformers_oracle().tokenizer

    def continue_rows(
        self,
        rows: Sequence[list[int]],
        max_new_tokens: int,
        batch_size: int = 16,
        yes_no: bool = False,
    ) -> tuple[list[str], list[float | None]]:
        """The target's greedy continuation of each token row, with P(yes) where ``yes_no``
        (:func:`oracle.engines.target.continue_rows`)."""
        from oracle.engines.target import continue_rows

        return continue_rows(self.transformers_oracle(), rows, max_new_tokens, batch_size, yes_no)

    def user_turn_rows(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text as one user message awaiting the target's reply, as token ids
        (:func:`oracle.engines.target.user_turn_rows`)."""
        from oracle.engines.target import user_turn_rows

        return user_turn_rows(self.transformers_oracle(), texts)

    def answer_base(
        self,
        sets: Sequence[torch.Tensor],
        questions: Sequence[str],
        layer: int,
        max_new_tokens: int,
        batch_size: int,
        yes_no: bool = False,
    ) -> tuple[list[str], list[float | None]]:
        """The oracle's prompt and injection into the base model with the adapter off
        (:func:`oracle.engines.target.answer_base`)."""
        from oracle.engines.target import answer_base

        return answer_base(
            self.transformers_oracle(), sets, questions, layer, max_new_tokens, batch_size, yes_no
        )

    def capture_steered(
        self,
        prompts: Sequence[str | list[dict[str, str]]],
        read_layer: int,
        vector: torch.Tensor | None = None,
        layer: int | None = None,
        scale: float = 1.0,
        positions: str | None = None,
        apply: str = "all",
    ) -> list[torch.Tensor]:
        """Block ``read_layer``'s output (n_positions, d_model) at ``positions`` of each prompt
        or conversation, the target steered by ``scale * vector`` at block ``layer``
        (:func:`oracle.steering.measure.capture_steered`)."""
        from oracle.steering.measure import capture_steered

        return capture_steered(
            self.transformers_oracle(), prompts, read_layer, vector, layer, scale, positions,
            apply=apply,
        )  # fmt: skip

    def start_choice(
        self, vec: SteeringVector, config: SteerConfig, val_prompts: Sequence[str]
    ) -> UseChooser:
        """The chooser of ``vec``'s apply mode and scale on ``val_prompts``, ready to step
        (:func:`oracle.steering.make.chooser_for`)."""
        from oracle.steering.make import chooser_for

        return chooser_for(self.transformers_oracle(), vec, config, val_prompts)

    def prompt_lengths(self, prompts: Sequence[str]) -> list[int]:
        """Tokens of each prompt as the target reads it (one user turn awaiting the reply)."""
        from oracle.steering.generate import prompt_ids

        return [len(ids) for ids in prompt_ids(self.transformers_oracle().tokenizer, prompts)]

    def generate(self, prompts: Sequence[str], **options: Any) -> list[str]:
        """The target's reply to each prompt (the oracle adapter off), optionally steered;
        ``options`` as :func:`oracle.steering.generate.generate` takes them."""
        from oracle.steering.generate import generate

        return generate(self.transformers_oracle(), prompts, **options)

    def start_generation(self, prompts: Sequence[str], **options: Any) -> GenerationRun:
        """:meth:`generate` as a run of steps (one batch of prompts each), for callers that
        interleave other work or stop between batches."""
        from oracle.steering.generate import GenerationRun

        return GenerationRun(self.transformers_oracle(), prompts, **options)

    def chat_ids(self, messages: Sequence[dict[str, str]]) -> list[int]:
        """Token ids of a conversation awaiting the target's next turn (the chat template with
        its generation prompt): a row for :meth:`generate_chat`."""
        from oracle.steering.generate import chat_ids

        return chat_ids(self.transformers_oracle().tokenizer, messages)

    def generate_chat(self, rows: Sequence[list[int]], **options: Any) -> list[ChatReply]:
        """The target's next turn after each row of :meth:`chat_ids`, in one batch, with stop
        strings, token counts, finish reasons and streamed text; ``options`` as
        :func:`oracle.steering.generate.generate_chat` takes them. Greedy, it equals :meth:`generate`."""
        from oracle.steering.generate import generate_chat

        return generate_chat(self.transformers_oracle(), rows, **options)

    def steering_layers(self, layer: int | None, read_layer: int | None) -> tuple[int, int]:
        """(steering layer, read layer) as a steering run would use them, checked."""
        from oracle.steering.run import resolve_layers

        return resolve_layers(self.transformers_oracle(), layer, read_layer)

    def start_steering(
        self,
        prompts: Sequence[str],
        config: SteerConfig,
        kl_prompts: Sequence[str] | None = None,
        replies: Sequence[str] | None = None,
    ) -> SteeringRun:
        """A steering optimisation on this engine's target, ready to :meth:`~SteeringRun.step`.
        ``replies``: the target's greedy replies to ``prompts`` when already generated (read
        'reply'; e.g. by :meth:`start_generation`, in steps)."""
        from oracle.steering.run import SteeringRun

        return SteeringRun(
            self.transformers_oracle(), prompts, config, kl_prompts=kl_prompts, replies=replies
        )

    def oracle_prompt_length(
        self, question: str, n_positions: int, layer: int | None = None
    ) -> int:
        """Tokens of the oracle's prompt for ``question`` about ``n_positions`` activations."""
        from oracle.prompts import build_oracle_prompt

        cfg = self.config
        layer = cfg.default_layer if layer is None else layer
        ao = self.transformers_oracle()
        prompt = build_oracle_prompt(
            ao.oracle_tokenizer,
            question,
            ao.n_injected(n_positions),
            layer,
            cfg.placeholder,
            cfg.prompt_template,
        )
        return len(prompt.input_ids)

    def oracle_vocab_size(self) -> int:
        """Tokens in the oracle's vocabulary."""
        return len(self.transformers_oracle().oracle_tokenizer)

    def generate_oracle_tokens(
        self,
        rows: Sequence[list[int]],
        new_tokens: Sequence[int],
        batch_size: int = 8,
        in_flight: int | None = None,
    ) -> None:
        """The oracle model generating exactly ``new_tokens[i]`` tokens after token row ``i``,
        greedy, with no capture or injection: the plain-generation baseline that the serving
        benchmark measures the engine against. Here in transformers, ``batch_size`` rows at a
        time in the given order (a server batches in arrival order); ``in_flight`` is for
        engines that batch continuously."""
        from oracle.generation import pad_left

        ao = self.transformers_oracle()
        model, tok = ao.oracle_model, ao.oracle_tokenizer
        device = next(model.parameters()).device
        with torch.no_grad():
            for s in range(0, len(rows), batch_size):
                idx = range(s, min(s + batch_size, len(rows)))
                ids_BT, mask_BT, _ = pad_left([rows[i] for i in idx], pad_id_of(tok))
                m = max(new_tokens[i] for i in idx)
                model.generate(
                    input_ids=ids_BT.to(device),
                    attention_mask=mask_BT.to(device),
                    max_new_tokens=m,
                    min_new_tokens=m,
                    do_sample=False,
                    pad_token_id=pad_id_of(tok),
                )

    def close(self) -> None:  # noqa: B027 - optional hook for engines that own processes
        """Release processes and memory held by the engine."""
