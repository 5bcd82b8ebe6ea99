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
from oracle.config import OracleConfig
from oracle.errors import FingerprintMismatchError, OracleConfigError, OracleInputError
from oracle.fingerprint import fingerprint
from oracle.inject import check_vectors, inject
from oracle.inputs import TargetInput
from oracle.layers import check_layer, hidden_size, model_device, num_layers
from oracle.models import load_model
from oracle.prompts import OraclePrompt, answer_ids_of, build_oracle_prompt

log = logging.getLogger(__name__)
ADAPTER_NAME = "oracle"


def pad_left(rows: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Left-pad token rows for generation; returns ids (B, T), mask (B, T) and each row's shift."""
    width = max(len(r) for r in rows)
    ids_BT = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask_BT = torch.zeros((len(rows), width), dtype=torch.long)
    shifts = []
    for b, row in enumerate(rows):
        shift = width - len(row)
        ids_BT[b, shift:] = torch.tensor(row, dtype=torch.long)
        mask_BT[b, shift:] = 1
        shifts.append(shift)
    return ids_BT, mask_BT, shifts


def sampling_kwargs(temperature: float, top_p: float) -> dict:
    """``generate`` arguments: sampling at ``temperature`` and ``top_p``; greedy at 0."""
    if temperature > 0:
        return dict(do_sample=True, temperature=temperature, top_p=top_p)
    return dict(do_sample=False)


def resolve_base_path(base: str, oracle_dir: Path) -> str:
    """``base_model`` may be relative to the oracle directory (shipped oracles use that)."""
    candidate = (oracle_dir / base).resolve()
    if not Path(base).is_absolute() and candidate.exists():
        return str(candidate)
    return base


class ActivationOracle:
    """Capture from a target and answer questions about activations.

    >>> ao = ActivationOracle.load(target="path/to/model", oracle="path/to/oracle_dir")
    >>> ao.ask([{"role": "system", "content": "You are a pirate."},
    ...         {"role": "user", "content": "Hi"}], ["What persona is the assistant playing?"])
    """

    def __init__(
        self,
        target: nn.Module,
        tokenizer: PreTrainedTokenizerBase,
        config: OracleConfig,
        oracle_model: nn.Module | None = None,
        oracle_tokenizer: PreTrainedTokenizerBase | None = None,
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
        peft_model = PeftModel.from_pretrained(o_model, str(oracle), adapter_name=ADAPTER_NAME)
        peft_model.eval()
        if separate:
            return cls(model, tokenizer, config, peft_model, o_tok)
        return cls(peft_model, tokenizer, config)

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
        """Target activations (adapter off): one :class:`Capture` per input."""
        layers = list(layers) if layers else [self.config.default_layer]
        positions = positions or self.config.positions
        with self.adapter_disabled():
            return capture(
                self.target, self.tokenizer, inputs, layers, positions, batch_size, max_tokens
            )

    # ------------------------------------------------------------------ answering
    def _prompts(
        self, activations: Sequence[torch.Tensor], questions: Sequence[str], layer: int | None
    ) -> list[OraclePrompt]:
        if len(activations) != len(questions):
            raise OracleInputError("give one activation set per question")
        layer = self.config.default_layer if layer is None else check_layer(self.target, layer)
        prompts = []
        for i, (acts, question) in enumerate(zip(activations, questions, strict=True)):
            check_vectors(acts, self.d_model, what=f"activations of item {i}")
            prompts.append(
                build_oracle_prompt(
                    self.oracle_tokenizer,
                    question,
                    acts.shape[0],
                    layer,
                    self.config.placeholder,
                    self.config.prompt_template,
                )
            )
        return prompts

    def _batch(self, prompts: list[OraclePrompt], activations: Sequence[torch.Tensor]):
        ids_BT, mask_BT, shifts = pad_left(
            [p.input_ids for p in prompts], pad_id_of(self.oracle_tokenizer)
        )
        positions = [
            [q + s for q in p.placeholder_positions] for p, s in zip(prompts, shifts, strict=True)
        ]
        device = model_device(self.oracle_model)
        ctx = inject(
            self.oracle_model, self.config.injection, positions, list(activations), ids_BT.shape[1]
        )
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
        prompts = self._prompts(activations, questions, layer)
        if seed is not None:
            torch.manual_seed(seed)
        tok = self.oracle_tokenizer
        answers: list[str] = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start : start + batch_size]
            acts = activations[start : start + batch_size]
            ids_BT, mask_BT, ctx = self._batch(chunk, acts)
            sampling = sampling_kwargs(temperature, top_p)
            with ctx:
                out_BT = self.oracle_model.generate(
                    input_ids=ids_BT,
                    attention_mask=mask_BT,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=pad_id_of(tok),
                    eos_token_id=tok.eos_token_id,
                    **sampling,
                )
            for row in out_BT[:, ids_BT.shape[1] :]:
                answers.append(tok.decode(row, skip_special_tokens=True).strip())
        return answers

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

    def ask(
        self,
        target_input: TargetInput | str | list[dict[str, str]],
        questions: Sequence[str],
        layer: int | None = None,
        positions: str | None = None,
        **generation,
    ) -> list[str]:
        """Capture ``target_input`` once and answer each question about it."""
        if not questions:
            raise OracleInputError("give at least one question")
        layer = self.config.default_layer if layer is None else layer
        cap = self.capture([target_input], [layer], positions)[0]
        acts = cap.activations[0]
        return self.answer([acts] * len(questions), list(questions), layer, **generation)
