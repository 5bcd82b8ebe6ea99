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
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from oracle.capture import pad_id_of, pad_right
from oracle.errors import OracleInputError
from oracle.inject import inject
from oracle.inputs import has_chat_template, tokenize_input
from oracle.layers import check_layer, model_device
from oracle.oracle import ActivationOracle
from oracle.positions import read_spec, select_positions
from oracle.prompts import build_oracle_prompt
from oracle.steering.apply import steer_mask
from oracle.steering.config import SteerConfig, SteeringResult
from oracle.steering.generate import as_target_input
from oracle.steering.hooks import read_block
from oracle.steering.kl import KLTerm, enforce_trainable
from oracle.steering.measure import conversations, with_replies
from oracle.steering.methods import METHODS, SteeringMethod

log = logging.getLogger(__name__)


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
        self.method: SteeringMethod  # set by SteeringRun once the reference norm is known

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
        spec = read_spec(None, self.positions_spec, target.prompt is not None)
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

    def steered(self, vector: torch.Tensor | None, mask_BT: torch.Tensor | None = None):
        """The target, steered by the run's method (oracle adapter off)."""
        return self.method.steered(self.layer, vector, mask_BT)

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
            enforce_trainable(self.models, self.trainable)
            hidden_BTD = read_block(self.ao.target, ids_BT, mask_BT, self.read_layer)
        acts = [
            self.ao.injected(hidden_BTD[b, self.items[i][1]], self.read_layer)
            for b, i in enumerate(idx)
        ]
        enforce_trainable(self.models, self.trainable)
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
        replies: Sequence[str] | None = None,
    ) -> None:
        """``replies``: the unsteered target's greedy replies to ``prompts`` (``reply_tokens``
        long), when already generated; read 'reply' generates them otherwise."""
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
            if replies is None:
                prompts = with_replies(ao, prompts, cfg.reply_tokens)
            else:
                prompts = conversations(prompts, replies)
                if not prompts:
                    raise OracleInputError("the target gave an empty reply to every prompt")
        self.core = _Steerer(ao, prompts, cfg)
        kl_items = [self.core._tokenise(p, read=False) for p in neutral[: cfg.batch_size]]
        self.reference_norm = self.core.reference_norm()
        self.method = METHODS[cfg.method](ao, cfg, self.reference_norm, self.core.device)
        self.core.method = self.method
        self.params = self.method.params
        self.core.trainable = self.params
        self.kl_term: KLTerm | None = None
        if cfg.kl_weight > 0:
            ids_BT, mask_BT = pad_right([i[0] for i in kl_items], pad_id_of(ao.tokenizer))
            device = self.core.device
            self.kl_term = KLTerm(self.core, ids_BT.to(device), mask_BT.to(device))
        enforce_trainable(self.core.models, [])
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
        return self.method.vector()

    def step(self) -> dict[str, float]:
        """One optimiser step; returns ``{"loss", "answer_nll", "kl", "norm"}``."""
        cfg, core = self.cfg, self.core
        if len(self.perm) < min(cfg.batch_size, self.n_prompts):
            self.perm += torch.randperm(self.n_prompts, generator=self.order).tolist()
        idx, self.perm = self.perm[: cfg.batch_size], self.perm[cfg.batch_size :]
        enforce_trainable(core.models, self.params)
        try:
            vector = self.vector()
            nll = core.answer_nll(idx, vector)
            loss, kl_value = nll, torch.zeros((), device=nll.device)
            if self.kl_term is not None:
                kl_value = self.kl_term(vector)
                loss = nll + cfg.kl_weight * kl_value
            if not torch.isfinite(loss):  # the vector would turn to NaN with it
                raise OracleInputError(
                    f"the steering loss is not finite at step {len(self.losses)}: the steered "
                    "model's numbers overflowed; lower lr or set max_norm"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        finally:
            enforce_trainable(core.models, [])
            for param in self.params:
                param.grad = None
        norm = self.method.after_step()
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
            adapter=self.method.adapter,
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
