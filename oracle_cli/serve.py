"""``oracle serve``: the HTTP service (uvicorn). With no model given, the toy world."""

from __future__ import annotations

import os
from typing import Annotated

import typer


def serve_cmd(
    target: Annotated[
        str | None,
        typer.Option(help="Target model: hub id or local directory (default: the oracle's base)."),
    ] = None,
    oracle: Annotated[
        str | None,
        typer.Option(help="Oracle directory (default with no model given: the toy world's)."),
    ] = None,
    engine: Annotated[str, typer.Option(help="Engine: hf (transformers) or vllm.")] = "hf",
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="ORACLE_API_KEY",
            help="Require this key (Bearer or X-API-Key) on every endpoint but /health "
            "(or set ORACLE_API_KEY).",
            show_default=False,
        ),
    ] = None,
    max_tokens: Annotated[
        int, typer.Option(help="Most target tokens (or activation positions) per request.")
    ] = 512,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer a request may ask.")] = 128,
    max_questions: Annotated[int, typer.Option(help="Most questions per request.")] = 16,
    max_heat_tokens: Annotated[
        int, typer.Option(help="Most tokens scored one by one for per-token P(yes).")
    ] = 64,
    max_body_bytes: Annotated[int, typer.Option(help="Largest request body (413 beyond).")] = (
        4_000_000
    ),
    queue_depth: Annotated[
        int, typer.Option(help="Requests admitted at once; beyond it 503 with Retry-After.")
    ] = 64,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take (504 beyond).")] = 60.0,
    batch_size: Annotated[int, typer.Option(help="Most engine requests in one batch.")] = 16,
    batch_wait_ms: Annotated[
        float, typer.Option(help="Milliseconds the batcher waits to fill a batch.")
    ] = 5.0,
    tensor_parallel_size: Annotated[
        int, typer.Option(help="vLLM tensor parallelism (passed through to vLLM).")
    ] = 1,
    dtype: Annotated[str, typer.Option(help="auto | float32 | bfloat16 | float16")] = "auto",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N (hf engine).")] = "auto",
    audit_root: Annotated[
        str | None, typer.Option(help="Directory where audit jobs are kept (audit router).")
    ] = None,
    force: Annotated[
        bool, typer.Option(help="Use the oracle even if its base-model fingerprint differs.")
    ] = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch threads for this process's own work (capture, and answers with the hf "
            "engine). vLLM's engine processes take OMP_NUM_THREADS. Default: torch's.",
            min=1,
        ),
    ] = None,
) -> None:
    """Serve the oracle over HTTP; ready when GET /health answers 200."""
    import uvicorn

    from serving.app import create_app
    from serving.service import load_engine
    from serving.settings import ServeSettings

    settings = ServeSettings(
        target=target,
        oracle=oracle,
        engine=engine,
        host=host,
        port=port,
        api_key=api_key or os.environ.get("ORACLE_API_KEY") or None,
        max_tokens=max_tokens,
        max_new_tokens=max_new_tokens,
        max_questions=max_questions,
        max_heat_tokens=max_heat_tokens,
        max_body_bytes=max_body_bytes,
        queue_depth=queue_depth,
        timeout=timeout,
        batch_size=batch_size,
        batch_wait_ms=batch_wait_ms,
        tensor_parallel_size=tensor_parallel_size,
        dtype=dtype,
        device=device,
        audit_root=audit_root,
        force=force,
    )
    settings.validate()
    # Load before listening: a bad model or oracle is a clear error (exit 2), and /health answers
    # 200 only once the engine is ready.
    engine_ = load_engine(settings)
    if threads is not None:
        import torch

        # After loading: vLLM's engine processes, started by then, keep OMP_NUM_THREADS.
        torch.set_num_threads(threads)
    try:
        # The app closes the engine at shutdown: uvicorn re-raises SIGTERM/SIGINT once it has
        # shut down, which ends the process before any code after `run` (vLLM's engine
        # processes were left running when the close came after it).
        app_ = create_app(settings, engine_, owns_engine=True)
        uvicorn.run(app_, host=host, port=port, log_level=log_level)
    finally:
        engine_.close()  # if the app never started; closing twice is harmless
