"""``oracle smol-world build``: remake the SmolLM2 world's data and oracle, stage by stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

smol_app = typer.Typer(
    help="The SmolLM2-135M-Instruct world: hidden personas and secrets on a real model.",
    no_args_is_help=True,
)


@smol_app.command("build")
def build_cmd(
    stage: Annotated[
        str, typer.Option(help="all | conversations | replies | rows | oracle (comma-separated).")
    ] = "all",
    work: Annotated[
        Path, typer.Option(help="Intermediate files: conversations, replies, rows, checkpoints.")
    ] = Path(".cache") / "smol_world",
    device: Annotated[str, typer.Option(help="cpu | cuda: where replies are generated.")] = "cpu",
    threads: Annotated[int, typer.Option(help="torch CPU threads.")] = 1,
    force: Annotated[bool, typer.Option(help="Rerun stages recorded as done.")] = False,
    train_config: Annotated[
        str, typer.Option(help="The oracle's training config (configs/smol-gpu.yaml on a GPU).")
    ] = "configs/smol.yaml",
    n_reply_train: Annotated[
        int | None, typer.Option(help="Training conversations answered by the target.")
    ] = None,
    n_reply_heldout: Annotated[
        int | None, typer.Option(help="Held-out conversations answered by the target.")
    ] = None,
) -> None:
    """Finished stages are skipped; replies and the oracle's training resume where they stopped."""
    import torch

    from oracle.errors import OracleInputError
    from worlds.smol.build import STAGES, SmolBuild, SmolBuildConfig

    torch.set_num_threads(threads)
    stages = list(STAGES) if stage == "all" else [s.strip() for s in stage.split(",")]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise OracleInputError(f"--stage: unknown stage(s) {unknown}; choose from {STAGES}")
    config = SmolBuildConfig(config=train_config)
    if n_reply_train is not None:
        config.n_reply_train = n_reply_train
    if n_reply_heldout is not None:
        config.n_reply_heldout = n_reply_heldout
    SmolBuild(work, config, device=device).run(stages, force)
    typer.echo(f"SmolLM2 world built (stage records: {work / 'stages.json'})")
