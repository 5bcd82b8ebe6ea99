"""``oracle toy-world``: remake (``build``) and measure (``eval``) the shipped toy world."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from oracle.defaults import TOY_WORLD
from oracle.errors import OracleInputError

toy_app = typer.Typer(
    help="The toy world: a small target with hidden personas and secrets, and its oracle.",
    no_args_is_help=True,
)

DEFAULT_WORK = Path(".cache") / "toy_world"


def _threads(threads: int) -> None:
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _config(out: Path, config: Path | None):
    from training.toy_world.build import BuildConfig

    source = config or (out / "build_config.json")
    if source.is_file():
        return BuildConfig.from_dict(json.loads(source.read_text()))
    if config is not None:
        raise OracleInputError(f"build config {str(config)!r} does not exist")
    return BuildConfig()


@toy_app.command("build")
def build_cmd(
    out: Annotated[
        Path, typer.Option(help="Where the toy world lives (spec in, weights and metrics out).")
    ] = TOY_WORLD,
    work: Annotated[
        Path, typer.Option(help="Intermediate files: corpus, checkpoints, stage records.")
    ] = DEFAULT_WORK,
    stage: Annotated[
        str,
        typer.Option(help="all | corpus | tokenizer | target | oracle | eval (comma-separated)."),
    ] = "all",
    config: Annotated[
        Path | None,
        typer.Option(help="Build config JSON (default: OUT/build_config.json, else built-ins)."),
    ] = None,
    target_steps: Annotated[
        int | None, typer.Option(help="Override the target's pretraining steps.")
    ] = None,
    oracle_steps: Annotated[
        int | None, typer.Option(help="Override the oracle's training steps.")
    ] = None,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda: where to train.")] = "auto",
    threads: Annotated[int, typer.Option(help="torch CPU threads (0 = torch's default).")] = 2,
    force: Annotated[
        bool, typer.Option(help="Rerun the chosen stages even if they are recorded as done.")
    ] = False,
) -> None:
    """Remake the toy world; finished stages are skipped and trainings resume from checkpoints."""
    from training.toy_world.build import STAGES, Build

    _threads(threads)
    stages = list(STAGES) if stage == "all" else [s.strip() for s in stage.split(",")]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise OracleInputError(f"--stage: unknown stage(s) {unknown}; choose from {STAGES}")
    cfg = _config(out, config)
    if target_steps is not None:
        cfg.target.steps = target_steps
    if oracle_steps is not None:
        cfg.oracle.max_steps = oracle_steps
    Build(out, work, cfg, device).run(stages, force)
    typer.echo(f"toy world built in {out} (stage records: {work / 'stages.json'})")


@toy_app.command("eval")
def eval_cmd(
    out: Annotated[Path, typer.Option(help="The toy world directory to measure.")] = TOY_WORLD,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    threads: Annotated[int, typer.Option(help="torch CPU threads (0 = torch's default).")] = 2,
    n_per_persona: Annotated[
        int, typer.Option(help="Held-out target replies per persona (style and keep rates).")
    ] = 40,
    n_oracle: Annotated[
        int, typer.Option(help="Held-out conversations for the oracle (plus 1/5 held-out combos).")
    ] = 600,
    n_probe: Annotated[
        int | None,
        typer.Option(
            help="Training conversations the linear probes are fitted on (default: as many as "
            "the oracle saw, from build_config.json; 0 = no probe)."
        ),
    ] = None,
) -> None:
    """Measure target and oracle on held-out conversations; write metrics.json and the README table."""
    from training.toy_world.evaluate import evaluate_all, metrics_table
    from training.toy_world.oracle_data import n_context_rows
    from training.toy_world.world import World

    _threads(threads)
    cfg = _config(out, None)
    metrics = evaluate_all(
        out,
        World.load(out),
        device,
        DEFAULT_WORK / "stages.json",
        n_per_persona,
        n_oracle,
        cfg.oracle.n_conversations if n_probe is None else n_probe,
        cfg.seed,
        n_context_rows(cfg.oracle.n_conversations, cfg.oracle.data),
    )
    typer.echo(metrics_table(metrics))
