"""``oracle eval``: the evaluation from the command line."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from oracle.errors import OracleInputError
from oracle_cli.common import WorldOpt, resolve_models


def eval_cmd(
    suite: Annotated[
        list[Path] | None,
        typer.Option(
            help="A suite file (JSONL, the format in evals/README.md); repeat for several. "
            "Default: the --world's held-out suite (the toy world's suites without --world)."
        ),
    ] = None,
    family: Annotated[
        str | None,
        typer.Option(help="Only these question families (a comma list), e.g. persona,secret."),
    ] = None,
    world: WorldOpt = None,
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
        typer.Option(
            help="A seeded random subsample: 40 test conversations per suite, 2000 train items."
        ),
    ] = False,
    seed: Annotated[
        int, typer.Option(help="Seed of suites, subsampling, controls and bootstrap.")
    ] = 0,
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
    capture_only: Annotated[
        bool,
        typer.Option(
            help="Only capture the train items into the feature cache (a long job to run in "
            "the background first; the evaluation then captures nothing again)."
        ),
    ] = False,
    skip_ablations: Annotated[
        bool, typer.Option(help="Run the suites only (no ablations).")
    ] = False,
    n_test: Annotated[
        int | None,
        typer.Option(help="Test conversations (groups) per suite (a seeded random sample)."),
    ] = None,
    n_train: Annotated[
        int | None,
        typer.Option(
            help="Train items for the probe and the text-only reader (toy world default: as "
            "many conversations as its oracle was trained on)."
        ),
    ] = None,
    write_suites: Annotated[
        Path | None,
        typer.Option(help="Also write the items evaluated as one suite file (JSONL) here."),
    ] = None,
    feature_cache: Annotated[
        str,
        typer.Option(
            help="Directory where the probe's train features are cached, so that a long run "
            "resumes and a rerun captures nothing again ('auto': $ORACLE_CACHE_DIR/eval-features "
            "or ~/.cache/activation-oracle/eval-features; 'none': no cache)."
        ),
    ] = "auto",
    max_new_tokens: Annotated[int, typer.Option(help="Longest generated answer, in tokens.")] = 12,
    batch_size: Annotated[int, typer.Option(help="Rows per forward pass.")] = 32,
    engine: Annotated[str, typer.Option(help="Engine: hf (transformers) or vllm.")] = "hf",
    device: Annotated[str, typer.Option(help="auto | cpu | cuda | cuda:N")] = "auto",
) -> None:
    """Oracle vs the best constant answer, a text-only reader, linear probes, black-box and
    training-free baselines and controls, on the hidden subset and held-out wordings, with a
    verdict per suite; writes JSON and a Markdown + HTML report."""
    from evals.ablations import ABLATIONS_DIR
    from evals.captures import feature_cache_dir
    from evals.evaluate import RunSpec, run_eval
    from evals.runner import EvalConfig

    if ablations_only and skip_ablations:
        raise OracleInputError("give at most one of --ablations-only and --skip-ablations")
    parts = "ablations" if ablations_only else ("suites" if skip_ablations else "all")
    parts = "capture" if capture_only else parts
    if world is not None and world != "toy":
        from oracle.worlds import get_world

        world_suite = get_world(world).suite()
        suite = suite or ([world_suite] if world_suite else None)
        target, oracle_dir = resolve_models(world, target, oracle)
        oracle = Path(oracle_dir) if oracle_dir else None
    toy = target is None and oracle is None and not suite and not synthetic
    if ablations_dir is None and toy and ABLATIONS_DIR.is_dir():
        ablations_dir = ABLATIONS_DIR
    cache = {"auto": str(feature_cache_dir()), "none": None}.get(feature_cache, feature_cache)
    families = [f.strip() for f in family.split(",") if f.strip()] if family else None
    spec = RunSpec(
        suite_files=[str(p) for p in suite or []],
        families=families,
        target=target,
        oracle=str(oracle) if oracle else None,
        out_dir=str(out),
        quick=quick,
        seed=seed,
        synthetic=synthetic,
        ablations_dir=str(ablations_dir) if ablations_dir else None,
        engine=engine,
        device=device,
        parts=parts,
        show_progress=True,
        command=shlex.join(["oracle", *sys.argv[1:]]),
        write_suites=str(write_suites) if write_suites else None,
        eval=EvalConfig(
            n_test=n_test,
            n_train=n_train,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            feature_cache=cache,
        ),
    )
    results, paths = run_eval(spec)
    if capture_only:
        typer.echo(f"train features cached in {cache}")
        return
    for name, s in results["suites"].items():
        summary = s["summary"]
        o = summary["figures"]["headline"].get("oracle")
        shown = f"{o['value']:.3f} [{o['lo']:.3f}, {o['hi']:.3f}]" if o and o["n"] else "n/a"
        typer.echo(f"{name}: {summary['verdict']} (oracle on the hidden subset: {shown})")
        for flag in summary["flags"]:
            typer.echo(f"  warning: {flag}")
    typer.echo(f"report: {paths['markdown']} {paths['html']} {paths['json']}")
