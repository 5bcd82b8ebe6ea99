"""Steering through the oracle: make the frozen oracle answer ``answer`` to ``question`` about the
target's activations, by optimising a steering vector (or a LoRA) on the target.

One step, for a batch of target prompts::

    target forward (oracle adapter off; + vector at block `layer`, or the steering LoRA on)
        --read block `read_layer` at the chosen positions, with gradients-->  acts (n_i, D)
    oracle forward (oracle adapter on, steering LoRA off), acts injected at the placeholders
        --> loss = NLL(answer | oracle prompt) + kl_weight * KL(steered || unsteered)

The KL term compares the target's next-token distributions with and without steering on neutral
prompts. Every model weight is frozen (``requires_grad`` False, re-asserted after each peft
adapter switch, since peft re-enables gradients of an adapter it switches on); only the vector
or the steering LoRA is trained.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from oracle.capture import pad_id_of, pad_right
from oracle.errors import OracleInputError
from oracle.inject import inject
from oracle.inputs import has_chat_template, tokenize_input
from oracle.layers import check_layer, model_device
from oracle.oracle import ActivationOracle
from oracle.positions import select_positions
from oracle.prompts import build_oracle_prompt
from oracle.steering_generate import as_target_input, with_replies
from oracle.steering_hooks import active_adapter, add_vector, read_block, steer_mask
from oracle.steering_io import SteeringVector, check_apply
from oracle.steering_lora import STEER_ADAPTER, add_steering_lora

log = logging.getLogger(__name__)
METHODS = ("vector", "lora")
READS = ("prompt", "reply")


@dataclass
class SteerConfig:
    """What to steer toward and how hard; see each field's help."""

    question: str = field(metadata={"help": "question put to the oracle"})
    answer: str = field(metadata={"help": "the answer the oracle should give"})
    method: str = field(default="vector", metadata={"help": "'vector' or 'lora'"})
    layer: int | None = field(
        default=None, metadata={"help": "steering block (default: read_layer - 1)"}
    )
    read_layer: int | None = field(
        default=None, metadata={"help": "block the oracle reads (default: the oracle's)"}
    )
    positions: str | None = field(
        default=None,
        metadata={
            "help": "target positions read (default: the oracle's; 'role:assistant' when "
            "read is 'reply')"
        },
    )
    read: str = field(
        default="prompt",
        metadata={
            "help": "'prompt': the oracle reads the prompts; 'reply': each prompt is followed "
            "by the unsteered target's own greedy reply and the oracle reads the reply, where "
            "the features that drive generation live"
        },
    )
    apply: str = field(
        default="all",
        metadata={
            "help": "where the vector is added: 'all' positions, 'reply' (the reply only, "
            "from the prompt's last position on; prompt and system prompt read unsteered) or "
            "'first' (the prompt's last position alone, where the reply starts; the reply "
            "reads it through attention); 'reply' and 'first' need read 'reply' and the "
            "vector method"
        },
    )
    reply_tokens: int = field(
        default=32, metadata={"help": "longest reply generated for read='reply', in tokens"}
    )
    steps: int = field(default=60, metadata={"help": "optimisation steps"})
    lr: float = field(
        default=0.05,
        metadata={"help": "Adam learning rate (vector: in units of the residual norm per step)"},
    )
    batch_size: int = field(default=8, metadata={"help": "prompts per step"})
    kl_weight: float = field(
        default=0.1, metadata={"help": "weight of KL(steered || unsteered) on neutral prompts"}
    )
    max_norm: float | None = field(
        default=None,
        metadata={"help": "vector norm bound, in units of the mean residual norm at `layer`"},
    )
    lora_r: int = field(default=4, metadata={"help": "rank of the steering LoRA"})
    lora_alpha: int = field(default=8, metadata={"help": "alpha of the steering LoRA"})
    seed: int = field(default=0, metadata={"help": "seed of the batch order and LoRA init"})

    def __post_init__(self) -> None:
        for name in ("question", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise OracleInputError(f"the {name} is missing or empty")
        if self.read not in READS:
            raise OracleInputError(f"read must be one of {READS}, got {self.read!r}")
        check_apply(self.apply)
        if self.apply != "all" and (self.read != "reply" or self.method != "vector"):
            raise OracleInputError(f"apply {self.apply!r} needs read 'reply' and the vector method")
        if not isinstance(self.reply_tokens, int) or self.reply_tokens < 1:
            raise OracleInputError(
                f"reply_tokens must be an integer >= 1, got {self.reply_tokens!r}"
            )
        if self.method not in METHODS:
            raise OracleInputError(f"method must be one of {METHODS}, got {self.method!r}")
        if not isinstance(self.steps, int) or self.steps < 1:
            raise OracleInputError(f"steps must be an integer >= 1, got {self.steps!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise OracleInputError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        for name in ("lr", "kl_weight"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise OracleInputError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_norm is not None and (not math.isfinite(self.max_norm) or self.max_norm <= 0):
            raise OracleInputError(f"max_norm must be a finite number > 0, got {self.max_norm!r}")


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
        if self.vector is None:
            raise OracleInputError("this result is a steering LoRA, not a vector")
        return SteeringVector(
            vector=self.vector.detach().cpu(),
            layer=self.layer,
            scale=1.0,
            question=self.config.question,
            answer=self.config.answer,
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


def resolve_layers(
    ao: ActivationOracle, layer: int | None, read_layer: int | None
) -> tuple[int, int]:
    """``(steering layer, read layer)``, checked: the steering block must come before the read."""
    read = ao.config.default_layer if read_layer is None else read_layer
    read = check_layer(ao.target, read)
    if layer is None:
        if read == 0:
            raise OracleInputError(
                "the oracle reads block 0, so no block comes before it to steer; "
                "give --read-layer >= 1"
            )
        return read - 1, read
    steer_layer = check_layer(ao.target, layer)
    if steer_layer >= read:
        raise OracleInputError(
            f"steering layer {steer_layer} must be below the read layer {read}, or the gradient "
            "cannot reach it"
        )
    return steer_layer, read


def _enforce_trainable(models: Sequence[nn.Module], trainable: Sequence[nn.Parameter]) -> None:
    keep = {id(p) for p in trainable}
    for model in models:
        for param in model.parameters():
            param.requires_grad_(id(param) in keep)


class _Steerer:
    """Holds the tokenised prompts and the trainable state of one :func:`steer` run."""

    def __init__(self, ao: ActivationOracle, prompts: Sequence[str], cfg: SteerConfig):
        self.ao, self.cfg = ao, cfg
        self.layer, self.read_layer = resolve_layers(ao, cfg.layer, cfg.read_layer)
        default_spec = "role:assistant" if cfg.read == "reply" else ao.config.positions
        self.positions_spec = cfg.positions or default_spec
        self.device = model_device(ao.target)
        self.items = [self._tokenise(p) for p in prompts]
        self.models = [ao.target] if ao.oracle_model is ao.target else [ao.target, ao.oracle_model]
        self.trainable: list[nn.Parameter] = []

    def _tokenise(
        self, prompt: str | list[dict[str, str]], read: bool = True
    ) -> tuple[list[int], list[int]]:
        """Token ids and read positions of a prompt (a user turn awaiting the reply) or of a
        whole conversation (chat messages, read as they stand, replies included); no
        positions when ``read`` is false (the KL prompts are run, not read)."""
        target = as_target_input(self.ao.tokenizer, prompt)
        tok = tokenize_input(self.ao.tokenizer, target)
        if not read:
            return tok.input_ids, []
        spec = self.positions_spec
        if target.prompt is not None and spec == "non_system":
            spec = "all"  # a plain prompt has no system part
        return tok.input_ids, select_positions(tok, spec)

    def batch(self, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        ids_BT, mask_BT = pad_right([self.items[i][0] for i in idx], pad_id_of(self.ao.tokenizer))
        return ids_BT.to(self.device), mask_BT.to(self.device)

    def reply_mask(self, idx: Sequence[int], width: int) -> torch.Tensor | None:
        """(B, T) 1 from the position before each row's first read token to its end (apply
        'reply': the reply, from the position that predicts its first token), or at that
        position alone (apply 'first'); else None."""
        spans = [(max(0, min(read) - 1), len(ids)) for ids, read in (self.items[i] for i in idx)]
        return steer_mask(self.cfg.apply, width, spans)

    @contextmanager
    def steered(
        self, vector: torch.Tensor | None, mask_BT: torch.Tensor | None = None
    ) -> Iterator[None]:
        """The target, steered: oracle adapter off, then the vector or the steering LoRA on."""
        if vector is not None:
            with (
                self.ao.adapter_disabled(),
                add_vector(self.ao.target, self.layer, vector, mask_BT=mask_BT),
            ):
                yield
        else:
            with active_adapter(self.ao.target, STEER_ADAPTER):
                yield

    @torch.no_grad()
    def reference_norm(self) -> float:
        """Median residual norm at the steering block over the prompts (sets the vector's scale)."""
        ids_BT, mask_BT = self.batch(range(min(len(self.items), self.cfg.batch_size)))
        with self.ao.adapter_disabled():
            hidden_BTD = read_block(self.ao.target, ids_BT, mask_BT, self.layer)
        norms = hidden_BTD.float().norm(dim=-1)[mask_BT.bool()]
        return float(norms.median())

    def answer_nll(self, idx: Sequence[int], vector: torch.Tensor | None) -> torch.Tensor:
        """Mean NLL per answer token of the oracle's answer, differentiable in the steering."""
        ids_BT, mask_BT = self.batch(idx)
        with self.steered(vector, self.reply_mask(idx, ids_BT.shape[1])):
            _enforce_trainable(self.models, self.trainable)
            hidden_BTD = read_block(self.ao.target, ids_BT, mask_BT, self.read_layer)
        acts = [hidden_BTD[b, self.items[i][1]] for b, i in enumerate(idx)]
        _enforce_trainable(self.models, self.trainable)
        otok = self.ao.oracle_tokenizer
        prompts = [
            build_oracle_prompt(
                otok,
                self.cfg.question,
                a.shape[0],
                self.read_layer,
                self.ao.config.placeholder,
                self.ao.config.prompt_template,
                answer=self.cfg.answer,
            )
            for a in acts
        ]
        o_ids_BT, o_mask_BT = pad_right([p.input_ids for p in prompts], pad_id_of(otok))
        o_dev = model_device(self.ao.oracle_model)
        spec = self.ao.config.injection
        positions = [p.placeholder_positions for p in prompts]
        with inject(self.ao.oracle_model, spec, positions, acts, o_ids_BT.shape[1]):
            logits_BTV = self.ao.oracle_model(
                input_ids=o_ids_BT.to(o_dev), attention_mask=o_mask_BT.to(o_dev), use_cache=False
            ).logits.float()
        labels_BT = torch.full_like(o_ids_BT, -100)
        for b, p in enumerate(prompts):
            labels_BT[b, p.answer_start : len(p.input_ids)] = o_ids_BT[
                b, p.answer_start : len(p.input_ids)
            ]
        labels_BT = labels_BT.to(o_dev)
        # the logits at position t predict token t + 1
        return F.cross_entropy(
            logits_BTV[:, :-1].reshape(-1, logits_BTV.shape[-1]),
            labels_BT[:, 1:].reshape(-1),
            ignore_index=-100,
        )

    def kl(self, ids_BT, mask_BT, ref_logp_BTV, vector: torch.Tensor | None) -> torch.Tensor:
        """KL(steered || unsteered) of next-token distributions, mean over real tokens (apply
        'reply' or 'first': at each prompt's last token, the one that starts the reply)."""
        lengths = mask_BT.sum(dim=1).long().tolist()  # right padding: real tokens come first
        steer_BT = steer_mask(self.cfg.apply, mask_BT.shape[1], [(n - 1, n) for n in lengths])
        with self.steered(vector, steer_BT):
            _enforce_trainable(self.models, self.trainable)
            logits_BTV = self.ao.target(
                input_ids=ids_BT, attention_mask=mask_BT, use_cache=False
            ).logits.float()
        _enforce_trainable(self.models, self.trainable)
        logp_BTV = logits_BTV.log_softmax(dim=-1)
        kl_BT = (logp_BTV.exp() * (logp_BTV - ref_logp_BTV)).sum(dim=-1)
        return kl_BT[mask_BT.bool()].mean()


class SteeringRun:
    """One optimisation, step by step (so that a server can interleave other work between
    chunks of steps). :func:`steer` runs it to the end.

    >>> run = SteeringRun(ao, prompts, cfg)
    >>> while not run.finished:
    ...     run.step()
    >>> result = run.result()
    """

    def __init__(
        self,
        ao: ActivationOracle,
        prompts: Sequence[str],
        cfg: SteerConfig,
        kl_prompts: Sequence[str] | None = None,
    ) -> None:
        if isinstance(prompts, str) or not prompts:
            raise OracleInputError("give at least one target prompt")
        self.ao, self.cfg, self.n_prompts = ao, cfg, len(prompts)
        neutral = list(kl_prompts) if kl_prompts else list(prompts)
        if cfg.read == "reply":
            if not has_chat_template(ao.tokenizer):
                raise OracleInputError(
                    "read='reply' needs a chat template to tell the reply from the prompt, and "
                    "this target's tokenizer has none: read the prompt instead (--read prompt)"
                )
            prompts = with_replies(ao, prompts, cfg.reply_tokens)
        self.core = _Steerer(ao, prompts, cfg)
        kl_items = [self.core._tokenise(p, read=False) for p in neutral[: cfg.batch_size]]
        self.reference_norm = self.core.reference_norm()
        self.raw_D: torch.Tensor | None = None
        if cfg.method == "vector":
            # Adam moves each coordinate ~lr units per step: lr is in residual norms per step
            self.unit = self.reference_norm / math.sqrt(ao.d_model)
            self.raw_D = torch.zeros(ao.d_model, device=self.core.device, requires_grad=True)
            self.params = [self.raw_D]
        else:
            self.unit = 1.0
            self.params = add_steering_lora(ao, cfg.lora_r, cfg.lora_alpha, cfg.seed)
        self.core.trainable = self.params
        ids_BT, mask_BT = pad_right([i[0] for i in kl_items], pad_id_of(ao.tokenizer))
        self.kl_ids_BT, self.kl_mask_BT = ids_BT.to(self.core.device), mask_BT.to(self.core.device)
        self.ref_logp_BTV: torch.Tensor | None = None
        if cfg.kl_weight > 0:
            with torch.no_grad(), ao.adapter_disabled():
                logits_BTV = ao.target(
                    input_ids=self.kl_ids_BT, attention_mask=self.kl_mask_BT, use_cache=False
                ).logits
            self.ref_logp_BTV = logits_BTV.float().log_softmax(dim=-1)
        _enforce_trainable(self.core.models, [])
        self.optimizer = torch.optim.Adam(self.params, lr=cfg.lr)
        self.order = torch.Generator().manual_seed(cfg.seed)
        self.perm: list[int] = []
        self.losses: list[float] = []
        self.answer_nll: list[float] = []
        self.kl: list[float] = []

    @property
    def finished(self) -> bool:
        """Whether ``cfg.steps`` steps have run."""
        return len(self.losses) >= self.cfg.steps

    def vector(self) -> torch.Tensor | None:
        """The current steering vector (d_model,), or None for the lora method."""
        return None if self.raw_D is None else self.raw_D * self.unit

    def step(self) -> dict[str, float]:
        """One optimiser step; returns ``{"loss", "answer_nll", "kl", "norm"}``."""
        cfg, core = self.cfg, self.core
        if len(self.perm) < min(cfg.batch_size, self.n_prompts):
            self.perm += torch.randperm(self.n_prompts, generator=self.order).tolist()
        idx, self.perm = self.perm[: cfg.batch_size], self.perm[cfg.batch_size :]
        _enforce_trainable(core.models, self.params)
        try:
            vector = self.vector()
            nll = core.answer_nll(idx, vector)
            loss, kl_value = nll, torch.zeros((), device=nll.device)
            if self.ref_logp_BTV is not None:
                kl_value = core.kl(self.kl_ids_BT, self.kl_mask_BT, self.ref_logp_BTV, vector)
                loss = nll + cfg.kl_weight * kl_value
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        finally:
            _enforce_trainable(core.models, [])
            for param in self.params:
                param.grad = None
        norm = 0.0
        if self.raw_D is not None:
            with torch.no_grad():
                if cfg.max_norm is not None:
                    bound = cfg.max_norm * self.reference_norm / self.unit
                    shrink = torch.clamp(bound / self.raw_D.norm().clamp_min(1e-12), max=1.0)
                    self.raw_D.mul_(shrink)
                norm = float(self.raw_D.norm() * self.unit)
        self.losses.append(loss.item())
        self.answer_nll.append(nll.item())
        self.kl.append(kl_value.item())
        return {
            "loss": self.losses[-1],
            "answer_nll": self.answer_nll[-1],
            "kl": self.kl[-1],
            "norm": norm,
        }

    def result(self) -> SteeringResult:
        """What the run found so far (the vector and the loss curves)."""
        vector = self.vector()
        return SteeringResult(
            config=self.cfg,
            layer=self.core.layer,
            read_layer=self.core.read_layer,
            losses=list(self.losses),
            answer_nll=list(self.answer_nll),
            kl=list(self.kl),
            vector=None if vector is None else vector.detach().clone(),
            adapter=STEER_ADAPTER if self.cfg.method == "lora" else None,
            reference_norm=self.reference_norm,
        )


def steer(
    ao: ActivationOracle,
    prompts: Sequence[str],
    cfg: SteerConfig,
    kl_prompts: Sequence[str] | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> SteeringResult:
    """Optimise a steering vector (or LoRA) so that the oracle answers ``cfg.answer``.

    ``prompts``: target prompts (one user turn each) whose activations the oracle reads.
    ``kl_prompts``: neutral prompts for the KL regulariser (default: ``prompts``; the first
    ``cfg.batch_size`` are used). ``callback(step, {"loss", "answer_nll", "kl", "norm"})`` is
    called after every step. Model weights are left untouched (and frozen); the lora method
    leaves the adapter ``steer`` on the target, inactive (the oracle adapter stays active).
    """
    run = SteeringRun(ao, prompts, cfg, kl_prompts)
    while not run.finished:
        metrics = run.step()
        if callback is not None:
            callback(len(run.losses) - 1, metrics)
    log.info("steering done: answer NLL %.4f -> %.4f", run.answer_nll[0], run.answer_nll[-1])
    return run.result()
