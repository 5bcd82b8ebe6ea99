"""``oracle toy-world``: remake (``build``), write the suites of (``suite``) and measure
(``eval``) the shipped toy world."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from oracle.errors import OracleInputError
from worlds.toy.world import TOY_WORLD

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
    from worlds.toy.build import BuildConfig

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
        typer.Option(
            help="all | corpus | tokenizer | target | oracle | suite | eval (comma-separated)."
        ),
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
    from worlds.toy.build import STAGES, Build

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
    report: Annotated[
        Path, typer.Option(help="Where the evaluation's report (oracle eval's) is written.")
    ] = DEFAULT_WORK / "evaluation",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda.")] = "auto",
    threads: Annotated[int, typer.Option(help="torch CPU threads (0 = torch's default).")] = 2,
    n_per_persona: Annotated[
        int, typer.Option(help="Held-out target replies per persona (style and keep rates).")
    ] = 40,
) -> None:
    """Measure the target (its checks) and the oracle (oracle eval on the suite files)."""
    from evals.captures import feature_cache_dir
    from worlds.toy.evaluate import evaluate_all, metrics_table

    _threads(threads)
    cfg = _config(out, None)
    stages = DEFAULT_WORK / "stages.json"
    cache = str(feature_cache_dir())  # shared with oracle eval: the same features
    metrics = evaluate_all(out, report, device, stages, n_per_persona, cfg.seed, cache)
    typer.echo(metrics_table(metrics))


@toy_app.command("suite")
def suite_cmd(
    out: Annotated[Path, typer.Option(help="The toy world directory.")] = TOY_WORLD,
) -> None:
    """Rewrite the world's suite files (suites/*.jsonl.xz) from its generator and build config."""
    from worlds.toy.suite import write_suites

    cfg = _config(out, None)
    for path in write_suites(out, cfg.suite_conversations, cfg.seed):
        typer.echo(path)
