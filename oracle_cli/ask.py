"""``oracle ask``: one conversation, one or more questions, answers on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from oracle_cli.common import (
    DeviceOpt,
    DtypeOpt,
    ForceOpt,
    WorldOpt,
    read_target_input,
    resolve_models,
)


def ask_cmd(
    question: Annotated[list[str], typer.Option(help="A question for the oracle (repeatable).")],
    world: WorldOpt = None,
    target: Annotated[
        str | None,
        typer.Option(
            help="Target model: hub id or local directory (default: the oracle's base model, or the toy world)."
        ),
    ] = None,
    oracle: Annotated[
        Path | None,
        typer.Option(
            help="Oracle directory (peft adapter + oracle_config.json). Without it, the --world's (with no --target: the toy world's)."
        ),
    ] = None,
    prompt: Annotated[str | None, typer.Option(help="Plain-text input for the target.")] = None,
    messages_file: Annotated[
        Path | None, typer.Option(help="JSON list of {role, content} chat messages.")
    ] = None,
    add_generation_prompt: Annotated[
        bool,
        typer.Option(
            help="Render the assistant header after a conversation that ends with the user's "
            "turn (what the target reads just before it replies; the smol world's oracle reads it)."
        ),
    ] = False,
    layer: Annotated[
        int | None, typer.Option(help="Target block to read (default: the oracle's).")
    ] = None,
    positions: Annotated[
        str | None,
        typer.Option(help="Positions to read (default: the oracle's, usually non_system)."),
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 32,
    temperature: Annotated[float, typer.Option(help="0 for greedy decoding.")] = 0.0,
    yes_no: Annotated[bool, typer.Option(help="Also print P(yes) for each question.")] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print a JSON object instead of plain answers.")
    ] = False,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
) -> None:
    """Ask the oracle about a conversation; prints each answer alone on a line (logs on stderr)."""
    from oracle.engines.hf import HFEngine

    target_input = read_target_input(prompt, messages_file, add_generation_prompt)
    target, oracle_dir = resolve_models(world, target, oracle)
    engine = HFEngine.load(target, oracle_dir, dtype=dtype, device=device, force=force)
    cap, answers = engine.query(
        target_input,
        question,
        layer,
        positions,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        yes_no=yes_no,
    )
    read_layer = cap.layers[0]
    if as_json:
        payload = {
            "answers": [
                {"question": q, "answer": a.text, "p_yes": a.p_yes}
                for q, a in zip(question, answers, strict=True)
            ],
            "layer": read_layer,
            "positions": cap.positions,
            "tokens_read": cap.read_tokens,
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    for a in answers:
        typer.echo(a.text if a.p_yes is None else f"{a.text}\tP(yes)={a.p_yes:.3f}")
