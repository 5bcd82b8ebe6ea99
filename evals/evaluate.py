"""``run_eval``: every suite, baseline, control and ablation, then the report.

The evaluation never trains: the trained ablation oracles are read from a directory
(``data/toy_world/ablations``, made by ``python -m evals.ablations``); the position-count
ablation needs no training (the shipped oracle reads fewer positions).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from evals.items import Suite
from evals.runner import EvalConfig, evaluate_suite
from evals.scoring import chance_rates
from evals.suites import load_suites
from oracle.engines import Engine, create_engine
from oracle.errors import OracleInputError

log = logging.getLogger(__name__)

QUICK_TEST, QUICK_TRAIN = 24, 96
POSITION_SPECS = ("last:1", "last:4", "last:16")
ABLATION_SUITE = "persona"


@dataclass
class RunSpec:
    """What to evaluate and where to write it."""

    suites: list[str]
    target: str | None = None
    oracle: str | None = None
    out_dir: str = "evals/results"
    quick: bool = False
    seed: int = 0
    suites_dir: str | None = None
    synthetic: bool = False
    ablations_dir: str | None = None
    engine: str = "hf"
    device: str = "auto"
    show_progress: bool = False
    command: str = "oracle eval"
    parts: str = "all"
    eval: EvalConfig = field(default_factory=EvalConfig)


def _suites(spec: RunSpec) -> tuple[dict[str, Suite], str]:
    suites = load_suites(spec.suites, spec.suites_dir, spec.synthetic, spec.seed)
    source = "synthetic" if spec.synthetic else (spec.suites_dir or "toy world (held-out split)")
    n_test, n_train = spec.eval.n_test, spec.eval.n_train
    if spec.quick:
        n_test, n_train = n_test or QUICK_TEST, n_train or QUICK_TRAIN
    if n_test is not None or n_train is not None:
        suites = {
            k: s.subsample(n_test, n_train, spec.seed + i)
            for i, (k, s) in enumerate(suites.items())
        }
    return suites, source


def position_ablation(engine: Engine, suite: Suite, cfg: EvalConfig) -> dict:
    """The shipped oracle reading the last 1/4/16 positions or its whole default span."""
    rows = []
    only_oracle = replace(cfg, methods=("oracle",))
    for spec in (*POSITION_SPECS, engine.config.positions):
        res = evaluate_suite(engine, suite, only_oracle, positions=spec)
        is_default = spec == engine.config.positions
        rows.append(
            {
                "name": spec,
                "all": res["methods"]["oracle"]["all"],
                "detail": "the oracle's default" if is_default else "",
                "is_default": is_default,
            }
        )
    return {
        "title": f"Number of positions read ({suite.name} suite, shipped oracle)",
        "note": "No training needed: the same oracle reads the last K tokens of the "
        f"conversation, or its default span '{engine.config.positions}'.",
        "rows": rows,
        "majority": chance_rates([i.label for i in suite.test], len(suite.labels))[1],
    }


def trained_ablations(
    ablations_dir: Path, target: str | None, suite: Suite, cfg: EvalConfig, device: str
) -> dict[str, dict]:
    """Each trained ablation oracle (a directory with ``ablation.json``) on ``suite``."""
    from evals.ablations import ABLATION_COMMAND

    found = sorted(p.parent for p in ablations_dir.glob("*/ablation.json"))
    if not found:
        return {}
    rows_by_axis: dict[str, list[dict]] = {}
    only_oracle = replace(cfg, methods=("oracle",))
    for oracle_dir in found:
        info = json.loads((oracle_dir / "ablation.json").read_text())
        engine = create_engine("hf", target, str(oracle_dir), device=device)
        try:
            res = evaluate_suite(engine, suite, only_oracle)
        finally:
            engine.close()
        for axis, value in info["axes"].items():
            rows_by_axis.setdefault(axis, []).append(
                {
                    "name": value,
                    "all": res["methods"]["oracle"]["all"],
                    "detail": f"{oracle_dir.name}: {info.get('detail', '')}",
                    "is_default": bool(info.get("is_default")),
                }
            )
    titles = {
        "site": "Injection site",
        "read_layer": "Read layer (25/50/75% of depth)",
        "mode": "Norm-matched addition vs replacement",
    }
    return {
        axis: {
            "title": f"{titles.get(axis, axis)} ({suite.name} suite, ablation oracles)",
            "note": "Small oracles trained with the same recipe, one setting changed; made by:",
            "command": ABLATION_COMMAND,
            "rows": rows,
            "majority": chance_rates([i.label for i in suite.test], len(suite.labels))[1],
        }
        for axis, rows in rows_by_axis.items()
    }


def conclusions(results: dict) -> list[str]:
    """Plain statements drawn from the ablation figures, against each axis's default."""
    out = []
    for axis, ab in (results.get("ablations") or {}).items():
        rows = ab.get("rows", [])
        default = next((r for r in rows if r.get("is_default")), None)
        if default is None:
            continue
        d = default["all"]
        if len(rows) == 1:
            out.append(
                f"{axis}: only the default '{default['name']}' is trained so far; the other "
                "settings are not compared yet."
            )
            continue
        majority = ab.get("majority")
        if majority is not None and not d["lo"] > majority:
            out.append(
                f"{axis}: inconclusive: the default '{default['name']}' itself is not above the "
                f"majority-class rate ({d['value']:.3f} vs {majority:.3f}), so these small "
                "oracles are under-trained."
            )
        better = [r for r in rows if r is not default and r["all"]["lo"] > d["hi"]]
        for r in better:
            out.append(
                f"{axis}: '{r['name']}' is clearly better than the default '{default['name']}' "
                f"({r['all']['value']:.3f} vs {d['value']:.3f}, intervals disjoint)."
            )
        if not better:
            out.append(
                f"{axis}: no setting is clearly better than the default '{default['name']}'."
            )
    return out


def display_path(path: str | None) -> str | None:
    """A path inside the repository as a relative one (reports hold no machine paths)."""
    from oracle.defaults import REPO_ROOT

    if path is None:
        return None
    p = Path(path)
    try:
        return str(p.resolve().relative_to(REPO_ROOT)) if p.exists() else str(path)
    except ValueError:
        return p.name if p.is_absolute() else str(path)


def _ablations(spec: RunSpec, engine: Engine, suite: Suite, cfg: EvalConfig, target) -> dict:
    out = {"positions": position_ablation(engine, suite, cfg)}
    if spec.ablations_dir and Path(spec.ablations_dir).is_dir():
        out |= trained_ablations(Path(spec.ablations_dir), target, suite, cfg, spec.device)
    return out


def run_eval(spec: RunSpec) -> tuple[dict, dict[str, Path]]:
    """Evaluate, write ``results.json``, ``report.md`` and ``report.html``; return both.

    ``spec.parts``: ``all``; ``suites`` (no ablations); ``ablations`` (recompute only the
    ablations and merge them into the ``results.json`` already in ``spec.out_dir``).
    """
    from evals.report import write_report

    if spec.parts not in ("all", "suites", "ablations"):
        raise OracleInputError(f"parts must be all, suites or ablations, got {spec.parts!r}")
    start, cpu_start = time.time(), time.process_time()
    cfg = replace(spec.eval, seed=spec.seed, show_progress=spec.show_progress)
    previous = None
    if spec.parts == "ablations":
        path = Path(spec.out_dir) / "results.json"
        if not path.is_file():
            raise OracleInputError(f"--ablations-only needs an earlier run's {path}")
        previous = json.loads(path.read_text())
        spec = replace(spec, suites=[ABLATION_SUITE])
    suites, source = _suites(spec)
    target, oracle = spec.target, spec.oracle
    if target is None and oracle is None:
        from oracle.defaults import default_oracle

        oracle = str(default_oracle())
    engine = create_engine(spec.engine, target, oracle, device=spec.device)
    try:
        suite_results = {}
        if spec.parts != "ablations":
            suite_results = {name: evaluate_suite(engine, s, cfg) for name, s in suites.items()}
        ablations: dict[str, dict] = {}
        if spec.parts != "suites" and ABLATION_SUITE in suites:
            ablations = _ablations(spec, engine, suites[ABLATION_SUITE], cfg, target)
    finally:
        engine.close()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if previous is not None:
        results = previous
        results["ablations"] = ablations
        results["meta"]["ablation_command"] = spec.command
        results["meta"]["ablation_created"] = now
        results["meta"]["ablation_seconds"] = time.time() - start
        results["meta"]["ablation_cpu_seconds"] = time.process_time() - cpu_start
    else:
        results = {
            "meta": {
                "command": spec.command,
                "seed": spec.seed,
                "quick": spec.quick,
                "n_resamples": cfg.n_resamples,
                "target": display_path(target or engine.config.base_model),
                "oracle": display_path(oracle),
                "engine": spec.engine,
                "source": source,
                "created": now,
            },
            "suites": suite_results,
            "ablations": ablations,
        }
        results["meta"]["seconds"] = time.time() - start
        results["meta"]["cpu_seconds"] = time.process_time() - cpu_start
    results["conclusions"] = conclusions(results)
    return results, write_report(results, spec.out_dir)
