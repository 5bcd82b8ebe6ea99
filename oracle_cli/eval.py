"""``oracle eval``: the evaluation from the command line. Its options are the fields of
:class:`evals.options.EvalOptions` (generated, one per field)."""

from __future__ import annotations

import shlex
import sys
from typing import Any

import typer

from oracle_cli.options import build_command, config_kwargs, field_options


def _eval(**options: Any) -> None:
    """Oracle vs the best constant answer, a text-only reader, linear probes, black-box and
    training-free baselines and controls, on the hidden subset and held-out wordings, with a
    verdict per suite; writes JSON and a Markdown + HTML report."""
    from evals.evaluate import run_eval
    from evals.options import EvalOptions, run_spec

    opts = EvalOptions(**config_kwargs(EvalOptions, options))
    spec = run_spec(opts, command=shlex.join(["oracle", *sys.argv[1:]]))
    results, paths = run_eval(spec)
    if opts.capture_only:
        typer.echo(f"train features cached in {spec.eval.feature_cache}")
        return
    _print_verdicts(results)
    typer.echo(f"report: {paths['markdown']} {paths['html']} {paths['json']}")


def _print_verdicts(results: dict) -> None:
    """One line per suite: its verdict and the oracle's figure on the hidden subset."""
    for name, s in results["suites"].items():
        summary = s["summary"]
        o = summary["figures"]["headline"].get("oracle")
        shown = f"{o['value']:.3f} [{o['lo']:.3f}, {o['hi']:.3f}]" if o and o["n"] else "n/a"
        typer.echo(f"{name}: {summary['verdict']} (oracle on the hidden subset: {shown})")
        for flag in summary["flags"]:
            typer.echo(f"  warning: {flag}")


def _eval_command():
    from evals.options import EvalOptions

    return build_command(_eval, field_options(EvalOptions), _eval.__doc__ or "")


eval_cmd = _eval_command()
