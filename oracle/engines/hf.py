"""The transformers engine: runs anywhere (CPU or GPU); the default."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from oracle.capture import Capture, capture
from oracle.engines.base import Answer, AnswerRequest, CaptureRequest, Engine
from oracle.oracle import ActivationOracle


class HFEngine(Engine):
    """Wraps an :class:`ActivationOracle`; batches requests that share layer and sampling."""

    name = "hf"

    def __init__(
        self, oracle: ActivationOracle, batch_size: int = 8, max_tokens: int | None = None
    ):
        self.oracle = oracle
        self.config = oracle.config
        self.d_model = oracle.d_model
        self.n_layers = oracle.n_layers
        self.target_name = oracle.config.base_model
        self.batch_size = batch_size
        self.max_tokens = max_tokens

    @classmethod
    def load(cls, target: str | None = None, oracle: str | None = None, **kwargs) -> HFEngine:
        batch_size = kwargs.pop("batch_size", 8)
        max_tokens = kwargs.pop("max_tokens", None)
        return cls(ActivationOracle.load(target, oracle, **kwargs), batch_size, max_tokens)

    def transformers_oracle(self) -> ActivationOracle:
        return self.oracle

    def capture(self, requests: Sequence[CaptureRequest]) -> list[Capture]:
        """Prepared requests (:meth:`prepare_capture`) run the forward pass alone, grouped by
        layers; the others are tokenised and read here, grouped by layers and positions."""
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            prepared = r.prepared is not None
            groups[(tuple(r.layers or ()), prepared, None if prepared else r.positions)].append(i)
        out: list[Capture | None] = [None] * len(requests)
        for (layers, prepared, positions), idx in groups.items():
            if prepared:
                with self.oracle.adapter_disabled():
                    caps = capture(
                        self.oracle.target,
                        self.oracle.tokenizer,
                        [requests[i].prepared for i in idx],
                        list(layers) or [self.config.default_layer],
                        batch_size=self.batch_size,
                    )
            else:
                caps = self.oracle.capture(
                    [requests[i].input for i in idx],
                    list(layers) or None,
                    positions,
                    self.batch_size,
                    self.max_tokens,
                )
            for i, cap in zip(idx, caps, strict=True):
                out[i] = cap
        return out  # type: ignore[return-value]

    def answer(self, requests: Sequence[AnswerRequest]) -> list[Answer]:
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, r in enumerate(requests):
            groups[(r.layer, r.max_new_tokens, r.temperature, r.top_p, r.seed)].append(i)
        out: list[Answer | None] = [None] * len(requests)
        tok = self.oracle.oracle_tokenizer
        for (layer, max_new, temperature, top_p, seed), idx in groups.items():
            acts = [requests[i].activations for i in idx]
            questions = [requests[i].question for i in idx]
            texts = self.oracle.answer(
                acts, questions, layer, max_new, temperature, top_p, seed, self.batch_size
            )
            yes_idx = [k for k, i in enumerate(idx) if requests[i].yes_no]
            p_yes: dict[int, float] = {}
            if yes_idx:
                scores = self.oracle.p_yes(
                    [acts[k] for k in yes_idx],
                    [questions[k] for k in yes_idx],
                    layer,
                    self.batch_size,
                )
                p_yes = dict(zip(yes_idx, scores, strict=True))
            for k, i in enumerate(idx):
                out[i] = Answer(
                    text=texts[k],
                    p_yes=p_yes.get(k),
                    prompt_tokens=acts[k].shape[0],
                    completion_tokens=len(tok.encode(texts[k], add_special_tokens=False)),
                )
        return out  # type: ignore[return-value]
