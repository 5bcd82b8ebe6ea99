"""``oracle audit`` (run, ``merge``, ``report``): audit logged activations."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from audit.ray_config import RayConfig
from oracle.errors import OracleInputError
from oracle.fields import defaults
from oracle_cli.common import resolve_models
from oracle_cli.options import build_command, config_kwargs, field_options

audit_app = typer.Typer(
    help=(
        "Audit logged activations: every (record, question) pair through the oracle; "
        "resumable; results.jsonl, results.parquet and report.html in --out."
    ),
    invoke_without_command=True,
    no_args_is_help=False,
)


def _audit(ctx: typer.Context, **options: Any) -> None:
    """Audit a log: `oracle audit --logs DIR --question Q [--question Q2 ...] --out DIR`."""
    if ctx.invoked_subcommand is not None:
        return
    from audit.options import AuditOptions

    opts = AuditOptions(**config_kwargs(AuditOptions, options))
    ray_options = {k: v for k, v in options.items() if k in defaults(RayConfig)}
    if opts.logs is None or opts.out is None:
        typer.echo(ctx.get_help(), err=True)
        raise OracleInputError("--logs and --out are required")
    ray_config = RayConfig(**config_kwargs(RayConfig, ray_options))
    ray = opts.ray or ray_config.ray_address is not None
    if not ray and ray_options != defaults(RayConfig):
        raise OracleInputError("the --ray-* options need --ray")
    _run(opts, ray, ray_config)


def _questions(opts):
    """The --question texts, then a --questions file's (duplicates dropped); at least one."""
    from audit.questions import load_questions, make_questions

    qs = make_questions(list(opts.question or []), opts.yes_no)
    if opts.questions is not None:
        seen = {x.text for x in qs}
        qs += [q for q in load_questions(Path(opts.questions), opts.yes_no) if q.text not in seen]
    if not qs:
        raise OracleInputError("give at least one --question or a --questions file")
    return qs


def _run(opts, ray: bool, ray_config: RayConfig) -> None:
    """The audit, locally or on Ray, with a progress bar; then its results and report."""
    from tqdm import tqdm

    from audit.finish import finish
    from audit.logformat import ActivationLog
    from audit.runner import AuditSpec, parse_shard, run_audit
    from oracle.engines import create_engine

    qs = _questions(opts)
    part = parse_shard(opts.shard)
    log_dir, out = ActivationLog(Path(opts.logs)), Path(opts.out)
    target, oracle = resolve_models(opts.world, opts.target, opts.oracle)
    spec = AuditSpec(
        logs=str(log_dir.path.resolve()),
        questions=[{"text": q.text, "yes_no": q.yes_no} for q in qs],
        shard=list(part),
        oracle=oracle,
        target=target,
        max_new_tokens=opts.max_new_tokens,
        max_positions=opts.max_positions,
    )
    bar = tqdm(desc="audit", unit="pair")

    def start(state) -> None:
        bar.reset(total=state.total)
        bar.update(state.done_before)

    engine_options = {
        "batch_size": opts.batch_size, "dtype": opts.dtype, "device": opts.device,
        "force": opts.force,
    }  # fmt: skip
    try:
        if ray:
            state = _run_on_ray(
                log_dir, qs, out, ray_config, opts.engine, target, oracle, engine_options, part,
                opts.batch_size, opts.max_new_tokens, opts.max_positions, spec, bar.update, start,
            )  # fmt: skip
        else:
            eng = create_engine(opts.engine, target, oracle, **engine_options)
            try:
                state = run_audit(
                    eng, log_dir, qs, out, part, opts.batch_size, opts.max_new_tokens, spec,
                    bar.update, start, max_positions=opts.max_positions,
                )  # fmt: skip
            finally:
                eng.close()
    finally:
        bar.close()
    summary = finish(out, log_dir, opts.threshold, expected=state.total)
    typer.echo(
        f"{out}: {summary['pairs']}/{state.total} pairs, {summary['errors']} errors, "
        f"{summary['flagged']} flagged; report: {out / 'report.html'}",
        err=True,
    )


def _run_on_ray(log_dir, qs, out, config, engine, target, oracle, engine_options, *args):
    """The audit as a Ray Data pipeline (:mod:`audit.ray_runner`); model paths that exist
    here are made absolute for the workers, unless a runtime environment ships them."""
    try:
        from audit.ray_runner import run_audit_ray
    except ImportError as exc:
        raise OracleInputError(
            f"--ray needs Ray ({exc}): pip install -e .[ray] (or pip install 'ray[data]')"
        ) from None
    shipped = bool((config.ray_runtime_env or {}).get("working_dir"))

    def where(path: str | Path | None) -> str | None:
        if path is None or shipped or not Path(path).exists():
            return None if path is None else str(path)
        return str(Path(path).resolve())

    options = dict(engine_options, target=where(target), oracle=where(oracle))
    return run_audit_ray(log_dir, qs, out, config, engine, options, *args)


# The command: a typer context, the options of AuditOptions and of RayConfig, generated from
# their fields.
def _audit_command():
    from audit.options import AuditOptions

    context = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    params = [context, *field_options(AuditOptions), *field_options(RayConfig)]
    return build_command(_audit, params, _audit.__doc__ or "")


audit_cmd = _audit_command()
audit_app.callback()(audit_cmd)


@audit_app.command("merge")
def merge_cmd(
    inputs: Annotated[list[Path], typer.Argument(help="Output directories of `--shard` runs.")],
    out: Annotated[Path, typer.Option(help="Directory for the merged results and report.")],
    threshold: Annotated[
        float, typer.Option(help="Flag records whose P(yes) is at least this, in the report.")
    ] = 0.5,
) -> None:
    """Join the outputs of `oracle audit --shard I/N` runs (each pair once) and write the report."""
    from audit.finish import finish
    from audit.merge import expected_pairs, merge_outputs

    merged = merge_outputs(list(inputs), out)
    summary = finish(out, None, threshold, expected=expected_pairs(merged["spec"]))
    missing = f"; missing shards {merged['missing_shards']}" if merged["missing_shards"] else ""
    typer.echo(f"{out}: {summary['pairs']} pairs from {len(inputs)} outputs{missing}", err=True)


@audit_app.command("report")
def report_cmd(
    out: Annotated[Path, typer.Argument(help="An audit output directory.")],
    threshold: Annotated[
        float, typer.Option(help="Flag records whose P(yes) is at least this.")
    ] = 0.5,
) -> None:
    """Rewrite report.html, results.parquet and summary.json of an audit output directory."""
    from audit.finish import finish
    from audit.runner import RUN_FILE

    if not (out / RUN_FILE).is_file():
        raise OracleInputError(f"{out} is not an audit output (no {RUN_FILE})")
    summary = finish(out, None, threshold)
    typer.echo(json.dumps(summary, indent=2))
