"""``oracle eval``: the evaluation suite from the command line."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from oracle.errors import OracleInputError


def eval_cmd(
    suite: Annotated[
        str, typer.Option(help="persona | secret | context | system | all (or a comma list).")
    ] = "all",
    target: Annotated[
        str | None,
        typer.Option(help="Target model: hub id or local directory (default: the oracle's base)."),
    ] = None,
    oracle: Annotated[
        Path | None,
        typer.Option(help="Oracle directory (default, with no --target: the toy world's oracle)."),
    ] = None,
    out: Annotated[
        Path, typer.Option(help="Directory for results.json, report.md and report.html.")
    ] = Path("evals/results"),
    quick: Annotated[
        bool,
        typer.Option(help="A seeded random subsample of each suite (24 test items): minutes."),
    ] = False,
    seed: Annotated[
        int, typer.Option(help="Seed of suites, subsampling, controls and bootstrap.")
    ] = 0,
    suites_dir: Annotated[
        Path | None,
        typer.Option(help="Directory of <suite>.json files to use instead of the toy world's."),
    ] = None,
    synthetic: Annotated[
        bool, typer.Option(help="Use the small synthetic world (pipeline checks, tiny models).")
    ] = False,
    ablations_dir: Annotated[
        Path | None,
        typer.Option(
            help="Directory of trained ablation oracles (default: data/toy_world/ablations "
            "when evaluating the toy world)."
        ),
    ] = None,
    ablations_only: Annotated[
        bool,
        typer.Option(help="Recompute only the ablations and merge them into --out's results.json."),
    ] = False,
    skip_ablations: Annotated[
        bool, typer.Option(help="Run the suites only (no ablations).")
    ] = False,
    n_test: Annotated[
        int | None, typer.Option(help="Cap on test items per suite (seeded random sample).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Longest generated answer, in tokens.")] = 12,
    batch_size: Annotated[int, typer.Option(help="Rows per forward pass.")] = 16,
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
) -> None:
    """Oracle vs linear probe, black-box and training-free baselines, controls and ablations,
    with bootstrap confidence intervals; writes JSON and a Markdown + HTML report."""
    from evals.ablations import ABLATIONS_DIR
    from evals.evaluate import RunSpec, run_eval
    from evals.runner import EvalConfig
    from evals.suites import parse_suite_names

    names = parse_suite_names(suite)
    if ablations_only and skip_ablations:
        raise OracleInputError("give at most one of --ablations-only and --skip-ablations")
    parts = "ablations" if ablations_only else ("suites" if skip_ablations else "all")
    toy = target is None and oracle is None and suites_dir is None and not synthetic
    if ablations_dir is None and toy and ABLATIONS_DIR.is_dir():
        ablations_dir = ABLATIONS_DIR
    spec = RunSpec(
        suites=names,
        target=target,
        oracle=str(oracle) if oracle else None,
        out_dir=str(out),
        quick=quick,
        seed=seed,
        suites_dir=str(suites_dir) if suites_dir else None,
        synthetic=synthetic,
        ablations_dir=str(ablations_dir) if ablations_dir else None,
        device=device,
        parts=parts,
        show_progress=True,
        command=shlex.join(["oracle", *sys.argv[1:]]),
        eval=EvalConfig(n_test=n_test, max_new_tokens=max_new_tokens, batch_size=batch_size),
    )
    results, paths = run_eval(spec)
    for name, s in results["suites"].items():
        o = s["methods"].get("oracle", {}).get("all")
        if o:
            typer.echo(f"{name}: oracle {o['value']:.3f} [{o['lo']:.3f}, {o['hi']:.3f}]")
        for flag in s["flags"]:
            typer.echo(f"  warning: {flag}")
    typer.echo(f"report: {paths['markdown']} {paths['html']} {paths['json']}")
