"""What a steering run is asked (:class:`SteerConfig`, the one definition of every steering
setting: the CLI's options and the HTTP request are generated from it) and what it finds
(:class:`SteeringResult`).

The defaults are the recipe that passed the toy world's pre-registered runs
(results/steering/README.md): the oracle reads the target's own reply
(``read="reply"``), the vector is added to the reply only while optimised (``apply`` resolves
to ``"reply"``), no KL term (``kl_weight=0``), 60 Adam steps at lr 0.05. How it is then used
at generation (the apply mode and scale) is chosen on validation prompts and saved with it
(:mod:`oracle.steering.choose`, :mod:`oracle.steering.make`). ``method="caa"`` makes the
vector by contrastive activation addition instead (:mod:`oracle.steering.caa`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from oracle.errors import OracleInputError
from oracle.fields import check_fields, setting
from oracle.steering.apply import APPLIES, apply_mode
from oracle.steering.methods import METHODS

if TYPE_CHECKING:
    import torch

    from oracle.steering.io import SteeringVector

READS = ("prompt", "reply")
CAA = "caa"


@dataclass
class SteerConfig:
    """What to steer toward and how hard; see each field's help."""

    question: str | None = setting(None, "the question put to the oracle (every method but 'caa')")
    answer: str | None = setting(
        None, "the answer the oracle should come to give (every method but 'caa')"
    )
    method: str = setting(
        "vector",
        "'vector' (a steering vector optimised through the oracle), 'lora' (a LoRA on the "
        "target, likewise) or 'caa' (contrastive activation addition: the mean difference of "
        "the target's activations with and without --persona-prompt; no oracle, no optimisation)",
        choices=(*METHODS, CAA),
    )
    persona_prompt: str | None = setting(
        None,
        "method 'caa': the system prompt whose effect the vector adds (e.g. 'You are a pirate.')",
    )
    layer: int | None = setting(
        None, "block whose output the vector is added to (default: read layer - 1)"
    )
    read_layer: int | None = setting(None, "block the oracle reads (default: the oracle's)")
    positions: str | None = setting(
        None,
        "target positions the oracle reads (default: the oracle's; role:assistant when read "
        "is 'reply')",
    )
    read: str = setting(
        "reply",
        "what the oracle reads: 'reply' (each prompt is followed by the unsteered target's own "
        "greedy reply and the oracle reads the reply, where the features that drive generation "
        "live) or 'prompt' (the prompt's tokens). Method 'caa': what is contrasted, 'reply' "
        "(the replies written with and without the persona prompt, both read without it) or "
        "'prompt' (the prompt's tokens after the system prompt, with and without it)",
        choices=READS,
    )
    apply: str | None = setting(
        None,
        "where the vector is added while optimised: 'all' positions, 'reply' (the reply only, "
        "from the prompt's last position on) or 'first' (that position alone, where the reply "
        "starts); 'reply' and 'first' need read 'reply' and the vector method. Default: "
        "'reply' for the vector method reading the reply, else 'all'. Saved with the vector: "
        "generation adds it the same way unless told otherwise",
        choices=APPLIES,
    )
    reply_tokens: int = setting(32, "longest reply generated for read 'reply', in tokens", ge=1)
    steps: int = setting(60, "optimisation steps", ge=1)
    lr: float = setting(
        0.05, "Adam learning rate (vector: in units of the residual norm per step)", ge=0
    )
    batch_size: int = setting(8, "prompts per step", ge=1)
    kl_weight: float = setting(
        0.0, "weight of KL(steered || unsteered) on neutral prompts; 0: off", ge=0
    )
    max_norm: float | None = setting(
        None, "bound on the vector's norm, in units of the residual norm at the layer", gt=0
    )
    lora_r: int = setting(4, "rank of the steering LoRA (method 'lora')", ge=1)
    lora_alpha: int | None = setting(None, "alpha of the steering LoRA (default: 2 x lora_r)", ge=1)
    seed: int = setting(0, "seed of the batch order and the LoRA's init", ge=0)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.method == CAA:
            if not isinstance(self.persona_prompt, str) or not self.persona_prompt.strip():
                raise OracleInputError("the caa method needs --persona-prompt (a system prompt)")
        else:
            for name in ("question", "answer"):
                value = getattr(self, name)
                if not isinstance(value, str) or not value.strip():
                    raise OracleInputError(f"the {name} is missing or empty")
        if self.apply is None:
            reply_vector = self.method == "vector" and self.read == "reply"
            self.apply = "reply" if reply_vector else "all"
        if self.lora_alpha is None:
            self.lora_alpha = 2 * self.lora_r
        mode = apply_mode(self.apply)
        if self.method == CAA:
            return  # no optimisation: the apply mode is the one the vector is tried with first
        if self.apply not in METHODS[self.method].applies or (
            mode.needs_reply and self.read != "reply"
        ):
            raise OracleInputError(f"apply {self.apply!r} needs read 'reply' and the vector method")


@dataclass
class SteeringResult:
    """What :func:`steer` found. ``vector`` (D,) for the vector method; the LoRA stays on the
    target as the adapter ``adapter`` for the lora method."""

    config: SteerConfig
    layer: int
    read_layer: int
    losses: list[float]
    answer_nll: list[float]
    kl: list[float]
    vector: torch.Tensor | None = None
    adapter: str | None = None
    reference_norm: float = 0.0

    def steering_vector(self, base_model: str | None = None) -> SteeringVector:
        """The vector with its metadata (layer, question, answer, loss curves), ready to save."""
        from oracle.steering.io import SteeringVector

        if self.vector is None:
            raise OracleInputError("this result is a steering LoRA, not a vector")
        return SteeringVector(
            vector=self.vector.detach().cpu(),
            layer=self.layer,
            scale=1.0,
            question=self.config.question or "",
            answer=self.config.answer or "",
            read_layer=self.read_layer,
            base_model=base_model,
            losses=self.losses,
            apply=self.config.apply,
            settings={
                **asdict(self.config),
                "answer_nll": self.answer_nll,
                "kl": self.kl,
                "reference_norm": self.reference_norm,
            },
        )
