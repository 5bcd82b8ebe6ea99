"""Measure the toy world (``oracle toy-world eval`` and the build's eval stage): the target's own
checks (:mod:`worlds.toy.eval_target`) and the oracle by ``oracle eval``'s code on the world's
suite files (:func:`evals.evaluate.run_eval`, the one evaluation stack), written as
``metrics.json`` and the table of the world's README."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from evals.evaluate import RunSpec, display_path, run_eval
from evals.report import headline_table, to_markdown
from evals.runner import EvalConfig
from worlds.toy.suite import suite_paths
from worlds.toy.world import World

log = logging.getLogger(__name__)
TABLE_START = "<!-- metrics:start -->"
TABLE_END = "<!-- metrics:end -->"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def target_table(target: dict) -> str:
    """The target's checks as a markdown table, each beside what it should be."""
    style = target.get("style_rate", {})
    rows = [
        (
            "persona style-word rate, held-out messages (mean of 8)",
            "style_rate_persona_mean",
            "high",
        ),
        ("style-word rate with no persona", None, "low"),
        ("style-word rate with a secret only", "style_rate_secret_only", "low"),
        ("keeps the persona when asked", "keep_persona", ">= 95%"),
        ("keeps the secret when asked", "keep_secret", ">= 95%"),
        ("says the secret in a task reply", "secret_said", "0%"),
        ("reply hints at the secret", "hint_rate", "high"),
    ]
    lines = ["| target | measured | should be |", "| --- | --- | --- |"]
    for name, key, goal in rows:
        value = style.get("none") if key is None else target.get(key)
        lines.append(f"| {name} | {_pct(value)} | {goal} |")
    return "\n".join(lines)


def metrics_table(metrics: dict) -> str:
    """The README's tables: the target's checks, then the evaluation's verdicts."""
    parts = [target_table(metrics.get("target", {}))]
    if metrics.get("verdicts"):
        parts.append(metrics["verdicts"].strip())
    return "\n\n".join(parts)


def update_readme(readme: Path, metrics: dict) -> None:
    """Replace the table between the metrics markers of ``readme`` (if both are present)."""
    if not readme.is_file():
        return
    text = readme.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        return
    head, rest = text.split(TABLE_START, 1)
    _, tail = rest.split(TABLE_END, 1)
    readme.write_text(f"{head}{TABLE_START}\n{metrics_table(metrics)}\n{TABLE_END}{tail}")


def _summary(results: dict) -> dict:
    """Each suite's verdict and headline figures (every method and baseline), from
    ``results.json``."""
    out = {}
    for name, res in results["suites"].items():
        s = res["summary"]
        out[name] = {
            "verdict": s["verdict"],
            "metric": res["metric"],
            "headline": s["figures"]["headline"],
            "all": s["figures"]["all"],
        }
    return out


def evaluate_all(
    out: Path,
    report_dir: Path,
    device: str = "auto",
    stages_path: Path | None = None,
    n_per_persona: int = 40,
    seed: int = 0,
    feature_cache: str | None = None,
) -> dict:
    """Measure the world in ``out``: the target's checks, then ``oracle eval``'s suites (no
    ablations) with its report in ``report_dir``; write ``out/metrics.json`` and the README's
    table. ``feature_cache``: where the probe's train features are cached (as ``oracle
    eval --feature-cache``; None: none)."""
    import torch

    from oracle.oracle import ActivationOracle
    from worlds.toy.eval_target import evaluate_target

    out = Path(out)
    ao = ActivationOracle.load(oracle=out / "oracle", dtype="float32", device=device)
    with ao.adapter_disabled():
        target_metrics = evaluate_target(ao.target, ao.tokenizer, World.load(out), n_per_persona)
    sizes = {
        "target_parameters": sum(
            p.numel() for n, p in ao.target.named_parameters() if "lora_" not in n
        ),
        "vocab": len(ao.tokenizer),
    }
    del ao
    log.info("target: %s", {k: v for k, v in target_metrics.items() if k != "examples"})
    spec = RunSpec(
        suite_files=[str(p) for p in suite_paths(out)],
        oracle=str(out / "oracle"),
        out_dir=str(report_dir),
        seed=seed,
        device=device,
        parts="suites",
        command=f"oracle eval --suite <{out.name}'s suite files> --oracle {out.name}/oracle",
        eval=EvalConfig(feature_cache=feature_cache),
    )
    results, paths = run_eval(spec)
    metrics = {
        "target": target_metrics,
        "oracle": _summary(results),
        "verdicts": to_markdown([("table", headline_table(results))]),
        "report": display_path(str(paths["markdown"])),
        "sizes": sizes,
    }
    if stages_path is not None and Path(stages_path).is_file():
        metrics["stages"] = json.loads(Path(stages_path).read_text())
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    update_readme(out / "README.md", metrics)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return metrics
