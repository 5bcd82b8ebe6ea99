"""Server settings: one dataclass that ``oracle serve`` fills option for option."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ServeSettings:
    """How the service loads its engine and which limits it enforces."""

    target: str | None = field(
        default=None, metadata={"help": "target model: hub id or path (default: the oracle's)"}
    )
    oracle: str | None = field(
        default=None, metadata={"help": "oracle directory (default: the toy world's)"}
    )
    engine: str = field(default="hf", metadata={"help": "'hf' (transformers) or 'vllm'"})
    host: str = field(default="127.0.0.1", metadata={"help": "interface to listen on"})
    port: int = field(default=8000, metadata={"help": "TCP port"})
    api_key: str | None = field(
        default=None, metadata={"help": "if set, every endpoint but /health requires it"}
    )
    max_tokens: int = field(
        default=512, metadata={"help": "most target tokens (or activation positions) a request"}
    )
    max_new_tokens: int = field(default=128, metadata={"help": "longest answer a request may ask"})
    max_questions: int = field(default=16, metadata={"help": "most questions in one request"})
    max_heat_tokens: int = field(
        default=64, metadata={"help": "most tokens scored one by one for per-token P(yes)"}
    )
    max_body_bytes: int = field(default=4_000_000, metadata={"help": "largest request body"})
    queue_depth: int = field(
        default=64, metadata={"help": "requests admitted at once; beyond it 503 + Retry-After"}
    )
    timeout: float = field(default=60.0, metadata={"help": "seconds a request may take (504)"})
    batch_size: int = field(default=16, metadata={"help": "most engine requests in one batch"})
    batch_wait_ms: float = field(
        default=5.0, metadata={"help": "how long the batcher waits to fill a batch"}
    )
    tensor_parallel_size: int = field(
        default=1, metadata={"help": "vLLM tensor parallelism (passed through to vLLM)"}
    )
    dtype: str = field(default="auto", metadata={"help": "auto | float32 | bfloat16 | float16"})
    device: str = field(default="auto", metadata={"help": "auto | cpu | cuda | cuda:N"})
    force: bool = field(
        default=False, metadata={"help": "use an oracle whose base fingerprint differs"}
    )
    audit_root: str | None = field(
        default=None, metadata={"help": "directory where the audit router keeps its jobs"}
    )

    def validate(self) -> None:
        """Refuse settings that cannot work, naming the option."""
        from oracle.engines import ENGINES
        from oracle.errors import OracleInputError

        if self.engine not in ENGINES:
            raise OracleInputError(
                f"--engine must be one of {sorted(ENGINES)}, got {self.engine!r}"
            )
        for name in (
            "max_tokens",
            "max_new_tokens",
            "max_questions",
            "max_heat_tokens",
            "max_body_bytes",
            "queue_depth",
            "batch_size",
            "tensor_parallel_size",
        ):
            if getattr(self, name) < 1:
                raise OracleInputError(f"--{name.replace('_', '-')} must be >= 1")
        if self.timeout <= 0 or self.batch_wait_ms < 0:
            raise OracleInputError("--timeout must be > 0 and --batch-wait-ms >= 0")

    def engine_kwargs(self) -> dict:
        """Keyword arguments for ``create_engine`` that this engine understands."""
        if self.engine == "vllm":
            return dict(
                tensor_parallel_size=self.tensor_parallel_size,
                batch_size=self.batch_size,
                max_tokens=self.max_tokens,
                dtype=self.dtype,
                device=self.device,
                force=self.force,
            )
        return dict(
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            dtype=self.dtype,
            device=self.device,
            force=self.force,
        )
