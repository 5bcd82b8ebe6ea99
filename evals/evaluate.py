"""``run_eval``: every suite, baseline, control and ablation, then the report.

The evaluation never trains an oracle: the trained ablation oracles are read from a directory
(a world's, e.g. ``data/toy_world/ablations``; each ``ablation.json`` says how it was made);
the position-count ablation needs no training (the shipped oracle reads fewer positions). The
linear probes and the text-only reader are fitted here (seconds to minutes).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from evals.analysis import estimate
from evals.report import write_report
from evals.runner import Captures, EvalConfig, evaluate_suite, primary_items
from evals.suite_format import write_suite_file
from evals.suites import Suite, load_suites
from evals.summary import summarise_suite
from oracle.engines import Engine, create_engine
from oracle.errors import OracleInputError

log = logging.getLogger(__name__)

QUICK_TEST, QUICK_TRAIN = 40, 2000
POSITION_SPECS = ("last:1", "last:4", "last:16")
ABLATION_SUITE = "persona"


@dataclass
class RunSpec:
    """What to evaluate and where to write it."""

    suite_files: list[str] = field(default_factory=list)
    families: list[str] | None = None
    target: str | None = None
    oracle: str | None = None
    out_dir: str = "results"
    quick: bool = False
    seed: int = 0
    synthetic: bool = False
    ablations_dir: str | None = None
    engine: str = "hf"
    device: str = "auto"
    show_progress: bool = False
    command: str = "oracle eval"
    parts: str = "all"
    write_suites: str | None = None
    eval: EvalConfig = field(default_factory=EvalConfig)


def _suites(spec: RunSpec) -> tuple[dict[str, Suite], str]:
    n_test, n_train = spec.eval.n_test, spec.eval.n_train
    if spec.quick:
        n_test, n_train = n_test or QUICK_TEST, n_train or QUICK_TRAIN
    return load_suites(spec.suite_files, spec.families, spec.synthetic, spec.seed, n_test, n_train)


def _oracle_only(engine: Engine, suite: Suite, cfg: EvalConfig, positions: str | None) -> dict:
    """The oracle alone on the suite's primary items (one per group), as an estimate."""
    test = [suite.test[i] for i in primary_items(suite.test)]
    sub = Suite(suite.name, suite.answer_type, [], test, suite.labels, suite.aliases)
    res = evaluate_suite(engine, sub, replace(cfg, methods=("oracle",)), positions=positions)
    values = res["methods"]["oracle"]["f1"]
    groups = [it["group"] for it in res["items"]]
    return estimate(values, groups, [True] * len(values), cfg.n_resamples, cfg.seed)


def position_ablation(engine: Engine, suite: Suite, cfg: EvalConfig) -> dict:
    """The shipped oracle reading the last 1/4/16 positions or its whole default span."""
    rows = []
    for spec in (*POSITION_SPECS, None):
        is_default = spec is None
        rows.append(
            {
                "name": spec or "the item's span",
                "all": _oracle_only(engine, suite, cfg, spec),
                "detail": "the suite's read span" if is_default else "",
                "is_default": is_default,
            }
        )
    return {
        "title": f"Number of positions read ({suite.name} suite, shipped oracle)",
        "note": "No training needed: the same oracle reads the last K tokens of the input, "
        "or the suite's own read span; one held-out wording per conversation.",
        "rows": rows,
    }


def trained_ablations(
    ablations_dir: Path, target: str | None, suite: Suite, cfg: EvalConfig, device: str
) -> dict[str, dict]:
    """Each trained ablation oracle (a directory with ``ablation.json``) on ``suite``."""
    found = sorted(p.parent for p in ablations_dir.glob("*/ablation.json"))
    rows_by_axis: dict[str, list[dict]] = {}
    commands: dict[str, list[str]] = {}  # how each was trained (its ablation.json says)
    for oracle_dir in found:
        info = json.loads((oracle_dir / "ablation.json").read_text())
        try:
            engine = create_engine("hf", target, str(oracle_dir), device=device)
        except Exception as exc:  # e.g. trained on another target than the one shipped now
            log.warning("ablation %s skipped: %s", oracle_dir.name, exc)
            continue
        try:
            est = _oracle_only(engine, suite, cfg, None)
        finally:
            engine.close()
        for axis, value in info["axes"].items():
            commands.setdefault(axis, []).append(info.get("command", ""))
            rows_by_axis.setdefault(axis, []).append(
                {
                    "name": value,
                    "all": est,
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
            "command": "; ".join(dict.fromkeys(c for c in commands[axis] if c)),
            "rows": rows,
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


def compact(res: dict) -> dict:
    """A suite's result as saved: what the summary has already used is dropped (the labels
    each answer names; token-F1 where it equals the 0/1 score) and the visible text is kept
    once per group, not once per wording."""
    for m in res["methods"].values():
        m.pop("predicted", None)
        if res["answer_type"] != "text":
            m.pop("f1", None)
    visible = {}
    for it in res["items"]:
        visible.setdefault(it["group"], it.pop("visible"))
    res["visible_by_group"] = visible
    return res


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


def run_eval(spec: RunSpec) -> tuple[dict, dict[str, Path]]:
    """Evaluate, write ``results.json``, ``report.md`` and ``report.html``; return both.

    ``spec.parts``: ``all``; ``suites`` (no ablations); ``ablations`` (recompute only the
    ablations and merge them into the ``results.json`` already in ``spec.out_dir``);
    ``capture`` (only capture the train items into the feature cache, a long job that can run
    in the background before the evaluation; returns no results and writes nothing else).
    """
    if spec.parts not in ("all", "suites", "ablations", "capture"):
        raise OracleInputError(
            f"parts must be all, suites, ablations or capture, got {spec.parts!r}"
        )
    if spec.parts == "capture" and not spec.eval.feature_cache:
        raise OracleInputError("capturing alone needs a feature cache directory")
    start, cpu_start = time.time(), time.process_time()
    cfg = replace(spec.eval, seed=spec.seed, show_progress=spec.show_progress)
    if spec.quick:
        cfg = replace(cfg, learning_curve=False)
    previous = None
    if spec.parts == "ablations":
        path = Path(spec.out_dir) / "results.json"
        if not path.is_file():
            raise OracleInputError(f"--ablations-only needs an earlier run's {path}")
        previous = json.loads(path.read_text())
        spec = replace(spec, families=[ABLATION_SUITE])
    suites, source = _suites(spec)
    if spec.write_suites:
        every = [i for s in suites.values() for i in (*s.train, *s.test)]
        write_suite_file(every, spec.write_suites)
    target, oracle = spec.target, spec.oracle
    if target is None and oracle is None:
        from oracle.defaults import default_oracle

        oracle = str(default_oracle())
    options = {"batch_size": cfg.batch_size} if spec.engine == "hf" else {}
    engine = create_engine(spec.engine, target, oracle, device=spec.device, **options)
    try:
        suite_results = {}
        cache = Path(cfg.feature_cache) if cfg.feature_cache else None
        captures = Captures(engine, engine.config.default_layer, cfg.show_progress, cache)
        if spec.parts == "capture":
            for suite in suites.values():
                captures.run(suite.train, keep=False)
            return {}, {}
        if spec.parts != "ablations":
            for name, suite in suites.items():
                res = evaluate_suite(engine, suite, cfg, captures=captures)
                res["summary"] = summarise_suite(res, cfg.n_resamples, cfg.seed)
                suite_results[name] = compact(res)
        del captures
        ablations: dict[str, dict] = {}
        if spec.parts != "suites" and ABLATION_SUITE in suites:
            ablations = {"positions": position_ablation(engine, suites[ABLATION_SUITE], cfg)}
            if spec.ablations_dir and Path(spec.ablations_dir).is_dir():
                ablations |= trained_ablations(
                    Path(spec.ablations_dir), target, suites[ABLATION_SUITE], cfg, spec.device
                )
    finally:
        engine.close()
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    if previous is not None:
        results = previous
        results["ablations"] = ablations
        results["meta"] |= {
            "ablation_command": spec.command,
            "ablation_created": now,
            "ablation_seconds": time.time() - start,
        }
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
                "seconds": time.time() - start,
                "cpu_seconds": time.process_time() - cpu_start,
            },
            "suites": suite_results,
            "ablations": ablations,
        }
    results["conclusions"] = conclusions(results)
    return results, write_report(results, spec.out_dir)
