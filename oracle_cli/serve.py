"""``oracle serve``: the HTTP service (uvicorn). With no model given, the toy world.

Its options are the fields of :class:`serving.settings.ServeSettings` (generated, one per
field), plus two that only the process needs (``--log-level``, ``--threads``).
"""

from __future__ import annotations

from typing import Any, Optional

import typer

from oracle_cli.options import build_command, config_kwargs, field_options, option


def _serve(log_level: str, threads: int | None, **settings: Any) -> None:
    """Serve the oracle over HTTP; ready when GET /health answers 200."""
    import uvicorn

    from serving.app import create_app
    from serving.service import load_engine
    from serving.settings import ServeSettings

    settings_ = ServeSettings(**config_kwargs(ServeSettings, settings))
    settings_.api_key = settings_.api_key or None  # an empty key means no key
    settings_.validate()
    # Load before listening: a bad model or oracle is a clear error (exit 2), and /health answers
    # 200 only once the engine is ready.
    engine_ = load_engine(settings_)
    if threads is not None:
        import torch

        # After loading: vLLM's engine processes, started by then, keep OMP_NUM_THREADS.
        torch.set_num_threads(threads)
    try:
        # The app closes the engine at shutdown: uvicorn re-raises SIGTERM/SIGINT once it has
        # shut down, which ends the process before any code after `run` (vLLM's engine
        # processes were left running when the close came after it).
        app_ = create_app(settings_, engine_, owns_engine=True)
        uvicorn.run(app_, host=settings_.host, port=settings_.port, log_level=log_level)
    finally:
        engine_.close()  # if the app never started; closing twice is harmless


def _serve_command():
    from serving.settings import ServeSettings

    params = [
        *field_options(ServeSettings),
        option("log_level", str, typer.Option("info", help="uvicorn log level.")),
        option(
            "threads",
            Optional[int],  # noqa: UP045 - typer reads it at runtime
            typer.Option(
                None,
                help="Torch threads for this process's own work (capture, and answers with the "
                "hf engine). vLLM's engine processes take OMP_NUM_THREADS. Default: torch's.",
                min=1,
            ),
        ),
    ]
    return build_command(_serve, params, _serve.__doc__ or "")


serve_cmd = _serve_command()
