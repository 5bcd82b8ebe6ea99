"""Server settings: one dataclass, the one definition of every option of ``oracle serve``
(the command's options are generated from its fields, :mod:`oracle.fields`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from oracle.fields import check_fields, setting

# Limits that must be at least 1, checked with the field's bounds.
POSITIVE = dict(ge=1)


@dataclass
class ServeSettings:
    """How the service loads its engine and which limits it enforces."""

    target: str | None = setting(
        None, "target model: hub id or local directory (default: the oracle's base)"
    )
    oracle: str | None = setting(
        None, "oracle directory (default with no model given: the toy world's)"
    )
    world: str | None = setting(
        None,
        "a named world: toy (the default with no model given) or smol (SmolLM2-135M-Instruct; "
        "`oracle models fetch smollm2-135m` once), or any world an installed package registers "
        "(entry-point group oracle.worlds); --target/--oracle override its parts",
    )
    engine: str = setting("hf", "engine: hf (transformers) or vllm")
    host: str = setting("127.0.0.1", "interface to listen on")
    port: int = setting(8000, "TCP port", ge=0, le=65535)
    api_key: str | None = setting(
        None,
        "require this key (Bearer or X-API-Key) on every endpoint but /health",
        envvar="ORACLE_API_KEY",
    )
    api_key_file: str | None = setting(
        None,
        "read the key from this file (its first line), so that it shows neither in the process "
        "list nor in the environment",
    )
    max_tokens: int = setting(
        512, "most target tokens (or activation positions) per request", **POSITIVE
    )
    max_new_tokens: int = setting(128, "longest answer a request may ask", **POSITIVE)
    max_questions: int = setting(16, "most questions per request", **POSITIVE)
    max_heat_tokens: int = setting(
        64, "most tokens scored one by one for per-token P(yes)", **POSITIVE
    )
    max_chars: int | None = setting(
        None,
        "most characters of text in one request, over all its messages, prompt, prompts and "
        "questions (400 beyond, before anything is tokenised; default: 32 x --max-tokens)",
        **POSITIVE,
    )
    max_body_bytes: int = setting(4_000_000, "largest request body (413 beyond)", **POSITIVE)
    body_timeout: float = setting(
        10.0, "seconds a client may take to send its request body (408 beyond)", gt=0
    )
    queue_depth: int = setting(
        64, "queries admitted at once; beyond it 429 with Retry-After", **POSITIVE
    )
    timeout: float = setting(60.0, "seconds a request may take (504 beyond)", gt=0)
    max_jobs: int = setting(
        4,
        "most queued and running jobs of each long kind (steer, generate, audit); beyond it "
        "429 with Retry-After",
        **POSITIVE,
    )
    long_concurrency: int = setting(
        1, "jobs of each long kind that run at once; the others wait their turn", **POSITIVE
    )
    long_share: float = setting(
        0.25,
        "share of the engine's time that long work (steering, generation, audits) takes while "
        "queries wait; it runs in steps between the queries' batches",
        gt=0,
        le=1,
    )
    batch_size: int = setting(16, "most engine requests in one batch", **POSITIVE)
    batch_wait_ms: float = setting(5.0, "milliseconds the batcher waits to fill a batch", ge=0)
    tensor_parallel_size: int = setting(
        1, "vLLM tensor parallelism (passed through to vLLM)", **POSITIVE
    )
    dtype: str = setting("auto", "auto | float32 | bfloat16 | float16")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N (hf engine)")
    audit_root: str | None = setting(None, "directory where audit jobs are kept (audit router)")
    steer_jobs: str | None = setting(
        None,
        "directory where steering jobs are kept, so that they survive a restart (default: "
        "<audit-root>/.oracle-jobs/steer with --audit-root; in memory without either)",
    )
    force: bool = setting(False, "use the oracle even if its base-model fingerprint differs")

    def validate(self) -> None:
        """Refuse settings that cannot work, naming the option."""
        from oracle.engines import ENGINES
        from oracle.errors import OracleInputError

        if self.engine not in ENGINES:
            raise OracleInputError(
                f"--engine must be one of {sorted(ENGINES)}, got {self.engine!r}"
            )
        try:
            check_fields(self)
        except OracleInputError as exc:  # name the option as the command line spells it
            name = str(exc).split(" ", 1)
            raise OracleInputError(f"--{name[0].replace('_', '-')} {name[1]}") from None
        if self.world is not None:
            from oracle.worlds import world_names

            names = world_names()
            if self.world not in names:
                raise OracleInputError(
                    f"--world: unknown world {self.world!r}; choose from {names}"
                )
        self.resolved_api_key()  # an unreadable or empty key file stops the start

    def resolved_api_key(self) -> str | None:
        """The key the server requires: ``api_key`` (the option or ``ORACLE_API_KEY``) or the
        first line of ``api_key_file``; None for no key."""
        from oracle.errors import OracleInputError

        if self.api_key_file is None:
            return self.api_key or None
        if self.api_key:
            raise OracleInputError(
                "give the key once: --api-key (or ORACLE_API_KEY) or --api-key-file"
            )
        try:
            lines = Path(self.api_key_file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise OracleInputError(f"--api-key-file: cannot read the key: {exc}") from None
        key = lines[0].strip() if lines else ""
        if not key:
            raise OracleInputError("--api-key-file: the file's first line is empty")
        return key

    def engine_kwargs(self) -> dict:
        """Keyword arguments for ``create_engine`` that this engine understands."""
        kwargs = dict(
            batch_size=self.batch_size,
            max_tokens=self.max_tokens,
            dtype=self.dtype,
            device=self.device,
            force=self.force,
        )
        if self.engine == "vllm":
            kwargs["tensor_parallel_size"] = self.tensor_parallel_size
        return kwargs
