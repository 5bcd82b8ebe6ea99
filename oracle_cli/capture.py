"""``oracle capture``: target activations to safetensors with a JSON sidecar, or (``--input``)
a logged-activation directory in the audit format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oracle_cli.common import DeviceOpt, DtypeOpt, parse_layers, read_target_input


def capture_cmd(
    model: Annotated[
        str | None, typer.Option(help="Target model: hub id or local directory.")
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="Plain-text input for the target.")] = None,
    messages_file: Annotated[
        Path | None,
        typer.Option(help="JSON list of {role, content} chat messages (instead of --prompt)."),
    ] = None,
    layers: Annotated[
        str | None, typer.Option(help="Blocks to read, e.g. '1' or '1,2' (0-based; block output).")
    ] = None,
    positions: Annotated[
        str | None,
        typer.Option(
            help="all | last:K | role:system|user|assistant | non_system | indices:I,J "
            "(default: all; with --input, the oracle's read spec)"
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output .safetensors file (a .json sidecar is written beside it)."),
    ] = None,
    input: Annotated[
        Path | None,
        typer.Option(
            "--input",
            help="JSONL of conversations: write a logged-activation directory (audit format) to --out.",
        ),
    ] = None,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    batch_size: Annotated[int, typer.Option(help="Inputs per forward pass.")] = 8,
    shard_records: Annotated[
        int, typer.Option(help="With --input: records per safetensors shard of the log.")
    ] = 256,
) -> None:
    """Capture residual-stream activations of a target model.

    Writes a tensor `activations` shaped [n_layers, n_positions, d_model] (float32) to OUT and
    OUT with a .json suffix holding token_ids, tokens, positions, layers and model. Layer L is
    the output of decoder block L, i.e. transformers' output_hidden_states[L+1] (for the last
    block: the raw block output, before the final norm).
    """
    from oracle.errors import OracleInputError

    if out is None:
        raise OracleInputError("--out is required")
    if input is not None:
        capture_logs(model, input, out, layers, positions, dtype, device, batch_size, shard_records)
        return
    if model is None:
        from oracle.defaults import default_target

        model = default_target()
    from safetensors.torch import save_file

    from oracle.capture import capture
    from oracle.models import load_model

    target = read_target_input(prompt, messages_file)
    m, tok = load_model(model, dtype=dtype, device=device)
    layer_list = parse_layers(layers) or [1]
    cap = capture(m, tok, [target], layer_list, positions or "all", batch_size)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({"activations": cap.activations.contiguous()}, str(out))
    sidecar = {
        "model": model,
        "layers": cap.layers,
        "positions": cap.positions,
        "token_ids": cap.token_ids,
        "tokens": cap.tokens,
        "shape": list(cap.activations.shape),
        "dtype": "float32",
    }
    out.with_suffix(".json").write_text(json.dumps(sidecar, indent=2) + "\n")
    typer.echo(f"wrote {out} {tuple(cap.activations.shape)}", err=True)


def capture_logs(
    model: str | None,
    input: Path,
    out: Path,
    layers: str | None,
    positions: str | None,
    dtype: str = "auto",
    device: str = "auto",
    batch_size: int = 8,
    shard_records: int = 256,
) -> None:
    """``oracle capture --input CONVS --out LOGDIR``: capture conversations into a log directory.

    Without ``model``, the toy world's target; without ``layers``/``positions``, the read spec
    of the toy world's oracle (or, for another model, its middle layer and ``non_system``).
    Running it again on the same ``out`` resumes after the last committed shard.
    """
    from tqdm import tqdm

    from audit.conversations import read_conversations
    from audit.writer import LogWriter, capture_conversations
    from oracle.config import OracleConfig
    from oracle.engines import create_engine

    read_spec = None
    if model is None:
        from oracle.defaults import default_oracle, default_target

        model = default_target()
        read_spec = OracleConfig.load(default_oracle())
    engine = create_engine("hf", model, None, batch_size=batch_size, dtype=dtype, device=device)
    config = read_spec or engine.config
    layer_list = parse_layers(layers) or list(config.read_layers)
    positions = positions or config.positions
    storage = dtype if dtype in ("float32", "bfloat16", "float16") else "float32"
    if dtype in ("fp32", "bf16", "fp16"):
        storage = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}[dtype]
    skipped: list[str] = []
    total = _count_lines(input)
    with LogWriter(
        out, str(model), layer_list, engine.d_model, storage, positions, shard_records
    ) as writer:
        done_before = len(writer.done_conversations)
        with tqdm(total=total, desc="capture", unit="conv") as bar:
            stats = capture_conversations(
                engine,
                read_conversations(input, skipped),
                writer,
                layer_list,
                positions,
                batch_size,
                bar.update,
            )
        manifest = writer.manifest
    engine.close()
    typer.echo(
        f"wrote {out}: {manifest.record_count} records ({stats.records} new, "
        f"{done_before} conversations already there), {len(manifest.shards)} shards; "
        f"skipped {len(skipped) + len(stats.skipped)}",
        err=True,
    )


def _count_lines(path: Path) -> int | None:
    if not (path.is_file() and path.suffix in (".jsonl", ".ndjson")):
        return None
    with open(path, "rb") as f:
        return sum(1 for line in f if line.strip())
