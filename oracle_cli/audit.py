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
from oracle_cli.common import DeviceOpt, DtypeOpt, ForceOpt, WorldOpt, resolve_models
from oracle_cli.options import build_command, config_kwargs, field_options

audit_app = typer.Typer(
    help=(
        "Audit logged activations: every (record, question) pair through the oracle; "
        "resumable; results.jsonl, results.parquet and report.html in --out."
    ),
    invoke_without_command=True,
    no_args_is_help=False,
)


def _audit(
    ctx: typer.Context,
    logs: Annotated[
        Path | None, typer.Option(help="Log directory written by `oracle capture --input`.")
    ] = None,
    question: Annotated[
        list[str] | None, typer.Option(help="A question to ask of every record (repeatable).")
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(
            help="File of questions: one per line, or JSONL/JSON with 'question' and optional 'yes_no'."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Output directory; running again with the same options resumes."),
    ] = None,
    oracle: Annotated[
        Path | None,
        typer.Option(help="Oracle directory (default: the --world's; with none, the toy world's)."),
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Base model for the oracle (default: the oracle's own).")
    ] = None,
    world: WorldOpt = None,
    engine: Annotated[str, typer.Option(help="Engine: hf | vllm.")] = "hf",
    batch_size: Annotated[int, typer.Option(help="Pairs per oracle call.")] = 16,
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.")] = 16,
    max_positions: Annotated[
        int | None,
        typer.Option(help="Give the oracle only the last K positions of longer records."),
    ] = None,
    shard: Annotated[
        str | None,
        typer.Option(help="I/N: audit only part I (0-based) of N; join with `oracle audit merge`."),
    ] = None,
    yes_no: Annotated[
        str,
        typer.Option(help="Which questions get P(yes): auto (Is/Does/... questions), all, none."),
    ] = "auto",
    threshold: Annotated[
        float, typer.Option(help="Flag records whose P(yes) is at least this, in the report.")
    ] = 0.5,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    force: ForceOpt = False,
    ray: Annotated[
        bool,
        typer.Option(
            help="Run on Ray: a pool of engine actors (--ray-actors), the log read by the "
            "workers; a local Ray unless --ray-address. Needs the ray extra."
        ),
    ] = False,
    **ray_options: Any,
) -> None:
    """Audit a log: `oracle audit --logs DIR --question Q [--question Q2 ...] --out DIR`."""
    if ctx.invoked_subcommand is not None:
        return
    if logs is None or out is None:
        typer.echo(ctx.get_help(), err=True)
        raise OracleInputError("--logs and --out are required")
    from tqdm import tqdm

    from audit.finish import finish
    from audit.logformat import ActivationLog
    from audit.questions import load_questions, make_questions
    from audit.runner import AuditSpec, parse_shard, run_audit
    from oracle.engines import create_engine

    qs = make_questions(list(question or []), yes_no)
    if questions is not None:
        qs += [q for q in load_questions(questions, yes_no) if q.text not in {x.text for x in qs}]
    if not qs:
        raise OracleInputError("give at least one --question or a --questions file")
    part = parse_shard(shard)
    log_dir = ActivationLog(logs)
    target, oracle_dir = resolve_models(world, target, oracle)
    oracle = Path(oracle_dir) if oracle_dir else None
    spec = AuditSpec(
        logs=str(log_dir.path.resolve()),
        questions=[{"text": q.text, "yes_no": q.yes_no} for q in qs],
        shard=list(part),
        oracle=str(oracle) if oracle else None,
        target=target,
        max_new_tokens=max_new_tokens,
        max_positions=max_positions,
    )
    ray_config = RayConfig(**config_kwargs(RayConfig, ray_options))
    if ray_config.ray_address is not None:
        ray = True
    if not ray and ray_options != {
        k: v for k, v in defaults(RayConfig).items() if k in ray_options
    }:
        raise OracleInputError("the --ray-* options need --ray")
    bar = tqdm(desc="audit", unit="pair")

    def start(state) -> None:
        bar.reset(total=state.total)
        bar.update(state.done_before)

    engine_options = {"batch_size": batch_size, "dtype": dtype, "device": device, "force": force}
    try:
        if ray:
            state = _run_on_ray(
                log_dir, qs, out, ray_config, engine, target, oracle, engine_options, part,
                batch_size, max_new_tokens, max_positions, spec, bar.update, start,
            )  # fmt: skip
        else:
            eng = create_engine(engine, target, str(oracle) if oracle else None, **engine_options)
            try:
                state = run_audit(
                    eng, log_dir, qs, out, part, batch_size, max_new_tokens, spec, bar.update,
                    start, max_positions=max_positions,
                )  # fmt: skip
            finally:
                eng.close()
    finally:
        bar.close()
    summary = finish(out, log_dir, threshold, expected=state.total)
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


# The command: the options above, and those of RayConfig generated from its fields.
audit_cmd = build_command(
    _audit,
    [
        *(
            p
            for p in inspect.signature(_audit, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ),
        *field_options(RayConfig),
    ],
    _audit.__doc__ or "",
)
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
