"""``ActivationOracle``: a target model plus an oracle adapter, behind one object.

Self-oracle (the default): the oracle is the target's own weights plus a peft LoRA adapter;
capture runs with the adapter disabled (peft's ``disable_adapter()``), answering with it on.
A separate oracle model is allowed when its hidden size equals the target's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from oracle.capture import Capture, capture, pad_id_of
from oracle.centering import center, load_means
from oracle.config import OracleConfig
from oracle.errors import FingerprintMismatchError, OracleConfigError, OracleInputError
from oracle.fingerprint import fingerprint
from oracle.generation import generate_texts, pad_left
from oracle.inject import check_vectors, inject
from oracle.inputs import TargetInput
from oracle.layers import check_layer, hidden_size, model_device, num_layers
from oracle.models import load_model
from oracle.pooling import pool, pooled_count
from oracle.positions import read_spec
from oracle.prompts import OraclePrompt, answer_ids_of, build_oracle_prompt

log = logging.getLogger(__name__)
ADAPTER_NAME = "oracle"


def resolve_base_path(base: str, oracle_dir: Path) -> str:
    """``base_model`` may be relative to the oracle directory (shipped oracles use that)."""
    candidate = (oracle_dir / base).resolve()
    if not Path(base).is_absolute() and candidate.exists():
        return str(candidate)
    return base


class ActivationOracle:
    """Capture from a target and answer questions about activations.

    >>> ao = ActivationOracle.load(target="path/to/model", oracle="path/to/oracle_dir")
    >>> caps = ao.capture([[{"role": "system", "content": "You are a pirate."},
    ...                     {"role": "user", "content": "Hi"}]])
    >>> ao.answer([caps[0].activations[0]], ["What persona is the assistant playing?"])

    To capture once and answer several questions, use an engine's ``query``
    (``oracle.engines.hf.HFEngine(ao).query(messages, questions)``).
    """

    def __init__(
        self,
        target: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        config: OracleConfig,
        oracle_model: nn.Module | None = None,
        oracle_tokenizer: PreTrainedTokenizerBase | None = None,
        means: dict[int, torch.Tensor] | None = None,
    ) -> None:
        self.target = target
        self.tokenizer = tokenizer
        self.config = config
        self.oracle_model = oracle_model if oracle_model is not None else target
        self.oracle_tokenizer = oracle_tokenizer if oracle_tokenizer is not None else tokenizer
        self.d_model = hidden_size(target)
        self.n_layers = num_layers(target)
        oracle_d = hidden_size(self.oracle_model)
        if oracle_d != self.d_model:
            raise OracleConfigError(
                f"the oracle model's hidden size ({oracle_d}) differs from the target's "
                f"({self.d_model}); a separate oracle must have the same d_model"
            )
        for layer in config.read_layers:
            check_layer(target, layer)
        check_layer(self.oracle_model, 0)
        if config.centered and not means:
            raise OracleConfigError("a centred oracle needs the mean activation of its layers")
        # {read layer: (D,) mean}, subtracted before injection (oracle.centering)
        self.means = means if config.centered else None

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(
        cls,
        target: str | None = None,
        oracle: str | Path | None = None,
        *,
        oracle_model: str | None = None,
        dtype: str | torch.dtype | None = "auto",
        device: str | None = "auto",
        force: bool = False,
    ) -> ActivationOracle:
        """Load a target and (optionally) an oracle directory.

        Without ``oracle`` the base model answers with no adapter (a training-free readout).
        ``force`` accepts an oracle whose base-model fingerprint does not match.
        """
        from peft import PeftModel

        config = None
        if oracle is not None:
            oracle_dir = Path(oracle)
            config = OracleConfig.load(oracle_dir)
            if target is None:
                target = resolve_base_path(config.base_model, oracle_dir)
            if oracle_model is None and config.oracle_model:
                oracle_model = resolve_base_path(config.oracle_model, oracle_dir)
        if target is None:
            raise OracleInputError("give a target model (hub id or path) or an oracle directory")
        model, tokenizer = load_model(target, dtype=dtype, device=device)
        separate = oracle_model is not None
        if separate:
            o_model, o_tok = load_model(oracle_model, dtype=dtype, device=device)
        else:
            o_model, o_tok = model, tokenizer
        if config is None:
            config = OracleConfig(
                base_model=str(target),
                read_layers=[num_layers(model) // 2],
                d_model=hidden_size(model),
            )
            return cls(model, tokenizer, config, o_model if separate else None, o_tok)
        if config.d_model is not None and config.d_model != hidden_size(model):
            raise OracleConfigError(
                f"the oracle reads activations of size {config.d_model}, but the target "
                f"{target!r} has hidden size {hidden_size(model)}"
            )
        if hidden_size(o_model) != hidden_size(model):
            raise OracleConfigError(
                f"the oracle model's hidden size ({hidden_size(o_model)}) differs from the "
                f"target's ({hidden_size(model)}); a separate oracle must have the same d_model"
            )
        if config.fingerprint:
            found = fingerprint(o_model, o_tok)
            differs = [k for k, v in config.fingerprint.items() if found.get(k) != v]
            if differs and not force:
                raise FingerprintMismatchError(
                    f"the oracle in {str(oracle)!r} was trained on another base model than "
                    f"{oracle_model or target!r} (differs in: {', '.join(differs)}); pass "
                    "force=True (--force) to use it anyway"
                )
            if differs:
                log.warning("fingerprint differs in %s; used anyway (forced)", differs)
        means = None
        if config.centered:
            means = load_means(oracle, config.read_layers, hidden_size(model))
        peft_model = PeftModel.from_pretrained(o_model, str(oracle), adapter_name=ADAPTER_NAME)
        peft_model.eval()
        if separate:
            return cls(model, tokenizer, config, peft_model, o_tok, means=means)
        return cls(peft_model, tokenizer, config, means=means)

    # ------------------------------------------------------------------ capture
    def adapter_disabled(self) -> contextlib.AbstractContextManager:
        """Context in which the target runs as its base model (the oracle adapter off)."""
        if self.oracle_model is self.target and hasattr(self.target, "disable_adapter"):
            return self.target.disable_adapter()
        return contextlib.nullcontext()

    def capture(
        self,
        inputs: Sequence[TargetInput | str | list[dict[str, str]]],
        layers: Sequence[int] | None = None,
        positions: str | None = None,
        batch_size: int = 8,
        max_tokens: int | None = None,
    ) -> list[Capture]:
        """Target activations (adapter off): one :class:`Capture` per input.

        Without ``positions``, each input is read at the oracle's positions, a plain prompt
        under a ``non_system`` default at all of them (:func:`oracle.positions.read_spec`).
        """
        layers = list(layers) if layers else [self.config.default_layer]
        targets = [TargetInput.coerce(x) for x in inputs]
        specs = [read_spec(positions, self.config.positions, t.prompt is not None) for t in targets]
        out: list[Capture | None] = [None] * len(targets)
        with self.adapter_disabled():
            for spec in dict.fromkeys(specs):
                idx = [i for i, s in enumerate(specs) if s == spec]
                caps = capture(
                    self.target,
                    self.tokenizer,
                    [targets[i] for i in idx],
                    layers,
                    spec,
                    batch_size,
                    max_tokens,
                )
                for i, cap in zip(idx, caps, strict=True):
                    out[i] = cap
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ answering
    def injected(self, activations_ND: torch.Tensor, layer: int) -> torch.Tensor:
        """The vectors as the oracle receives them, (N, D) -> (k, D): the last
        ``max_positions`` of them (as training read them), centred on ``layer``'s mean when
        the oracle is centred (``oracle.centering``), then pooled as its config says
        (``oracle.pooling``). Every injecting path calls this, and builds the oracle's prompt
        for the k vectors it returns."""
        check_vectors(activations_ND, self.d_model)
        if self.config.max_positions is not None:  # as trained: the span's last positions
            activations_ND = activations_ND[-self.config.max_positions :]
        if self.means is not None:
            layer = check_layer(self.target, layer)
            mean = self.means.get(layer)
            if mean is None:
                raise OracleInputError(
                    f"this centred oracle has means for layers {sorted(self.means)}, not for {layer}"
                )
            activations_ND = center(activations_ND, mean)
        return pool(activations_ND, self.config.pooling)

    def n_injected(self, n_positions: int) -> int:
        """Placeholders in the oracle's prompt for ``n_positions`` read positions."""
        if self.config.max_positions is not None:
            n_positions = min(n_positions, self.config.max_positions)
        return pooled_count(self.config.pooling, n_positions)

    def resolve_layer(self, layer: int | None) -> int:
        """The read layer a question is asked about (the oracle's default when None)."""
        return self.config.default_layer if layer is None else check_layer(self.target, layer)

    def _injected_all(
        self, activations: Sequence[torch.Tensor], questions: Sequence[str], layer: int | None
    ) -> list[torch.Tensor]:
        if len(activations) != len(questions):
            raise OracleInputError("give one activation set per question")
        for i, acts in enumerate(activations):
            check_vectors(acts, self.d_model, what=f"activations of item {i}")
        return [self.injected(a, self.resolve_layer(layer)) for a in activations]

    def _prompts(
        self,
        vectors: Sequence[torch.Tensor],
        questions: Sequence[str],
        layer: int | None,
        answers: Sequence[str] | None = None,
    ) -> list[OraclePrompt]:
        """The oracle's prompt for each set of injected ``vectors`` (from
        :meth:`_injected_all`, which checked them), with its answer when ``answers`` are given
        (an empty answer is scored as the end-of-sequence token alone)."""
        layer = self.resolve_layer(layer)
        return [
            build_oracle_prompt(
                self.oracle_tokenizer,
                question,
                acts.shape[0],
                layer,
                self.config.placeholder,
                self.config.prompt_template,
                answer=None if answers is None else (answers[i].strip() or None),
            )
            for i, (acts, question) in enumerate(zip(vectors, questions, strict=True))
        ]

    def _injection(
        self, prompts: list[OraclePrompt], activations: Sequence[torch.Tensor], shifts, width: int
    ):
        """The injection of ``activations`` at the placeholders of left-padded ``prompts``."""
        positions = [
            [q + s for q in p.placeholder_positions] for p, s in zip(prompts, shifts, strict=True)
        ]
        return inject(self.oracle_model, self.config.injection, positions, list(activations), width)

    def _batch(self, prompts: list[OraclePrompt], activations: Sequence[torch.Tensor]):
        ids_BT, mask_BT, shifts = pad_left(
            [p.input_ids for p in prompts], pad_id_of(self.oracle_tokenizer)
        )
        device = model_device(self.oracle_model)
        ctx = self._injection(prompts, activations, shifts, ids_BT.shape[1])
        return ids_BT.to(device), mask_BT.to(device), ctx

    @torch.no_grad()
    def answer(
        self,
        activations: Sequence[torch.Tensor],
        questions: Sequence[str],
        layer: int | None = None,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = None,
        batch_size: int = 8,
    ) -> list[str]:
        """Generate an answer for each (activations (n_i, D), question) pair."""
        if max_new_tokens < 1:
            raise OracleInputError("max_new_tokens must be >= 1")
        if temperature < 0 or not 0 < top_p <= 1:
            raise OracleInputError("temperature must be >= 0 and top_p in (0, 1]")
        activations = self._injected_all(activations, questions, layer)
        prompts = self._prompts(activations, questions, layer)

        def injection(start: int, ids_BT: torch.Tensor, shifts: list[int]):
            chunk = prompts[start : start + len(shifts)]
            acts = activations[start : start + len(shifts)]
            return self._injection(chunk, acts, shifts, ids_BT.shape[1])

        return generate_texts(
            self.oracle_model,
            self.oracle_tokenizer,
            [p.input_ids for p in prompts],
            max_new_tokens,
            temperature,
            top_p,
            seed,
            batch_size,
            context=injection,
        )

    @torch.no_grad()
    def answer_logprobs(
        self,
        activations: Sequence[torch.Tensor],
        questions: Sequence[str],
        answers: Sequence[str],
        layer: int | None = None,
        batch_size: int = 8,
    ) -> list[float]:
        """log P(answer | activations, question) under the oracle: the sum over the answer's
        tokens and its end-of-sequence token (teacher-forced, one forward pass per batch).
        ``exp`` of it is the answer's own probability, a confidence the evaluation
        calibrates."""
        if not len(activations) == len(questions) == len(answers):
            raise OracleInputError("give one activation set and one answer per question")
        vectors = self._injected_all(activations, questions, layer)
        prompts = self._prompts(vectors, questions, layer, answers)
        eos = self.oracle_tokenizer.eos_token_id
        for p in prompts:
            if p.answer_start is None:  # an empty answer: the end of sequence right away
                p.answer_start = len(p.input_ids)
                p.input_ids = [*p.input_ids, eos if eos is not None else 0]
        out: list[float] = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            ids_BT, mask_BT, ctx = self._batch(chunk, vectors[start : start + batch_size])
            # positions count real tokens only, as generation counts them under left padding
            pos_BT = (mask_BT.cumsum(-1) - 1).clamp_min(0)
            with ctx:
                logits_BTV = self.oracle_model(
                    input_ids=ids_BT, attention_mask=mask_BT, position_ids=pos_BT, use_cache=False
                ).logits.float()
            logp_BTV = logits_BTV.log_softmax(dim=-1)
            width = ids_BT.shape[1]
            for b, p in enumerate(chunk):
                shift = width - len(p.input_ids)  # left padding
                total = 0.0
                for t in range(p.answer_start, len(p.input_ids)):
                    total += float(logp_BTV[b, shift + t - 1, p.input_ids[t]])
                out.append(total)
        return out

    def yes_no_ids(self) -> tuple[int, int]:
        yes = answer_ids_of(self.oracle_tokenizer, self.config.yes_answer)
        no = answer_ids_of(self.oracle_tokenizer, self.config.no_answer)
        if yes[0] == no[0]:
            raise OracleConfigError("yes and no answers start with the same token")
        return yes[0], no[0]

    @torch.no_grad()
    def p_yes(
        self,
        activations: Sequence[torch.Tensor],
        questions: Sequence[str],
        layer: int | None = None,
        batch_size: int = 8,
    ) -> list[float]:
        """P(yes) from the next-token logits, normalised over the yes and no tokens."""
        activations = self._injected_all(activations, questions, layer)
        prompts = self._prompts(activations, questions, layer)
        yes_id, no_id = self.yes_no_ids()
        scores: list[float] = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            ids_BT, mask_BT, ctx = self._batch(chunk, activations[start : start + batch_size])
            with ctx:
                logits_BTV = self.oracle_model(
                    input_ids=ids_BT, attention_mask=mask_BT, use_cache=False
                ).logits
            pair_B2 = logits_BTV[:, -1, [yes_id, no_id]].float().softmax(dim=-1)
            scores += pair_B2[:, 0].tolist()
        return scores
