"""The engine interface: what serving, audit and evals call, never transformers or vLLM directly.

An engine owns a target and an oracle and does two things in batches: capture activations from
target inputs, and answer questions about activation sets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from oracle.capture import Capture
from oracle.config import OracleConfig
from oracle.errors import OracleInputError
from oracle.inputs import TargetInput


@dataclass
class CaptureRequest:
    """Read ``layers`` (default: the oracle's default layer) at ``positions`` of ``input``."""

    input: TargetInput
    layers: list[int] | None = None
    positions: str | None = None


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

    def query(
        self,
        target_input: TargetInput,
        questions: Sequence[str],
        layer: int | None = None,
        positions: str | None = None,
        **options,
    ) -> tuple[Capture, list[Answer]]:
        """Capture once, then answer every question about that capture."""
        if not questions:
            raise OracleInputError("give at least one question")
        layer = self.config.default_layer if layer is None else layer
        cap = self.capture([CaptureRequest(target_input, [layer], positions)])[0]
        requests = [AnswerRequest(cap.activations[0], q, layer, **options) for q in questions]
        return cap, self.answer(requests)

    def close(self) -> None:  # noqa: B027 - optional hook for engines that own processes
        """Release processes and memory held by the engine."""
