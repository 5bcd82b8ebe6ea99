"""The steering comparison's results: per-method rates with bootstrap intervals (over personas
x prompts), the oracle-minus-CAA differences, and the README (tables, a rate-against-fluency
plot, replies side by side) written from ``results.json`` (see ``steering_compare``)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np


def bootstrap(values: list[float], seed: int = 0, n: int = 1000) -> dict:
    from evals.bootstrap import bootstrap_ci

    return bootstrap_ci(values, n, seed).to_dict()


def save(results: dict, out: Path, seconds: float) -> None:
    """Summarise and write ``results.json``, ``README.md`` and the plot (the personas so far)."""
    results["summary"] = summarise(results)
    results["seconds"] = seconds
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write_readme(results, out)


def summarise(results: dict) -> dict:
    """Per method: rates (mean over personas and prompts, bootstrap over them) of style,
    classifier and oracle naming, greedy and sampled, steered and random; and per persona."""
    out: dict = {}
    methods = sorted({m for e in results["personas"].values() for m in e})
    for method in methods:
        row: dict = {}
        for kind in ("greedy", "sampled"):
            for name in ("steered", "random"):
                entries = [e[method][f"{name}_{kind}"] for e in results["personas"].values()]
                for metric in ("style", "classifier", "oracle_names", "loops"):
                    values = [v for e in entries for v in e.get(metric, [])]
                    if values:
                        row[f"{name}_{kind}_{metric}"] = bootstrap(values)
                row[f"{name}_{kind}_ppl_ratio"] = float(
                    np.median([e["ppl_ratio"] for e in entries])
                )
        out[method] = row
    for kind in ("greedy", "sampled"):
        entries = [v for k, v in results["unsteered"][kind].items() if k in results["personas"]]
        for metric in ("style", "classifier", "oracle_names", "loops"):
            values = [v for e in entries for v in e.get(metric, [])]
            if values:
                out.setdefault("unsteered", {})[f"{kind}_{metric}"] = bootstrap(values)
    if results.get("prompted") and results["personas"]:
        entries = [v for k, v in results["prompted"].items() if k in results["personas"]]
        for metric in ("style", "classifier", "oracle_names", "loops"):
            values = [v for e in entries for v in e.get(metric, [])]
            if values:
                out.setdefault("prompted", {})[f"greedy_{metric}"] = bootstrap(values)
        out.setdefault("prompted", {})["greedy_ppl_ratio"] = float(
            np.median([e["ppl_ratio"] for e in entries])
        )
    if "caa" in methods and "oracle" in methods:
        for metric in ("style", "classifier"):
            diffs = []
            for e in results["personas"].values():
                a = e["oracle"]["steered_greedy"].get(metric, [])
                b = e["caa"]["steered_greedy"].get(metric, [])
                diffs += [x - y for x, y in zip(a, b, strict=True)]
            if diffs:
                out[f"oracle_minus_caa_greedy_{metric}"] = bootstrap(diffs)
    return out


def _fmt(e: dict | None) -> str:
    if not e or not e.get("n"):
        return "n/a"
    return f"{e['value']:.2f} [{e['lo']:.2f}, {e['hi']:.2f}]"


def write_readme(results: dict, out: Path) -> None:
    from evals.svg import line_chart

    s = results["summary"]
    lines = [
        f"# Steering with the defaults: {results['world']} world",
        "",
        "Made by `python -m scripts.experiments.steering_compare "
        f"--world {results['world']} --methods {results['settings']['methods']}"
        + (
            f" --layer {results['settings']['layer']}"
            if results["settings"]["layer"] is not None
            else ""
        )
        + (
            f" --personas {results['settings']['personas']}"
            if results["settings"].get("personas")
            else ""
        )
        + (
            f" --curve-scales {results['settings']['curve_scales']}"
            if results["settings"].get("curve_scales", "0.25,0.5,1,1.5") != "0.25,0.5,1,1.5"
            else ""
        )
        + "`"
        + f" ({results['seconds']:.0f} s). Each vector is made from {results['settings']['n_train']} "
        f"neutral prompts with the method's defaults, its apply mode and scale chosen on "
        f"{results['settings']['n_val']} held-out prompts, and used as saved on "
        f"{results['settings']['n_test']} other held-out prompts. Rates are shares of replies "
        "(bootstrap 95% intervals over personas x prompts); the perplexity ratio is the median "
        "over personas of the steered replies' perplexity under the unsteered target over the "
        "unsteered replies'. Loops: replies under half of whose character 8-grams are distinct "
        "(repetition the perplexity ratio does not count against fluency).",
        "",
        "| method | replies | style words | classifier | oracle names it | perplexity ratio | loops | random vector: style | random: perplexity ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    if "prompted" in s:
        pr = s["prompted"]
        lines.append(
            f"| the persona's system prompt (no steering) | greedy | {_fmt(pr.get('greedy_style'))} | "
            f"{_fmt(pr.get('greedy_classifier'))} | {_fmt(pr.get('greedy_oracle_names'))} | "
            f"{pr['greedy_ppl_ratio']:.2f} | {_fmt(pr.get('greedy_loops'))} | | |"
        )
    for kind in ("greedy", "sampled"):
        u = s.get("unsteered", {})
        lines.append(
            f"| unsteered | {kind} | {_fmt(u.get(f'{kind}_style'))} | "
            f"{_fmt(u.get(f'{kind}_classifier'))} | {_fmt(u.get(f'{kind}_oracle_names'))} | 1.00 | "
            f"{_fmt(u.get(f'{kind}_loops'))} | | |"
        )
        for method, row in s.items():
            if (
                method in ("unsteered", "prompted")
                or not isinstance(row, dict)
                or "steered_greedy_ppl_ratio" not in row
            ):
                continue
            lines.append(
                f"| {method} | {kind} | {_fmt(row.get(f'steered_{kind}_style'))} | "
                f"{_fmt(row.get(f'steered_{kind}_classifier'))} | "
                f"{_fmt(row.get(f'steered_{kind}_oracle_names'))} | "
                f"{row[f'steered_{kind}_ppl_ratio']:.2f} | {_fmt(row.get(f'steered_{kind}_loops'))} | "
                f"{_fmt(row.get(f'random_{kind}_style'))} | "
                f"{row[f'random_{kind}_ppl_ratio']:.2f} |"
            )
    if results.get("classifier"):
        c = results["classifier"]
        lines += ["", f"Classifier: the evaluation's text reader fitted on {c['n_fit']} of the "
                  "target's own replies to training prompts (with each persona's system prompt "
                  "and with none, greedy and sampled). Fitted without a quarter of those prompts, it "
                  f"names the right one of {round(1 / c['chance'])} labels for "
                  f"{c['held_out_accuracy']:.2f} of their {c['n_held_out']} replies (chance "
                  f"{c['chance']:.2f}): the ceiling of what it can tell.",]  # fmt: skip
    for metric, what in (("style", "style-word rate"), ("classifier", "classifier rate")):
        if f"oracle_minus_caa_greedy_{metric}" in s:
            lines += ["", f"Oracle steering minus CAA, {what} (greedy, each at its chosen scale, "
                      "both chosen under the same fluency bound; paired by persona and prompt): "
                      f"{_fmt(s[f'oracle_minus_caa_greedy_{metric}'])}."]  # fmt: skip
    lines += ["", "Per persona (greedy replies to the 10 test prompts; the chosen apply mode and "
              "scale; style-word and classifier rates, steered and with the random vector; "
              "perplexity ratio; loops):", "",
              "| persona | method | chosen | style | classifier | random: style | random: classifier "
              "| perplexity ratio | loops |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip

    def share(row: dict, metric: str) -> str:
        return f"{np.mean(row[metric]):.2f}" if row.get(metric) else ""

    series: dict = {}
    for persona, entry in results["personas"].items():
        if persona in results.get("prompted", {}):
            pr = results["prompted"][persona]
            lines.append(
                f"| {persona} | system prompt | | {share(pr, 'style')} | "
                f"{share(pr, 'classifier')} | | | {pr['ppl_ratio']:.2f} | {share(pr, 'loops')} |"
            )
        for method, rows in entry.items():
            st, rd = rows["steered_greedy"], rows["random_greedy"]
            lines.append(
                f"| {persona} | {method} | {rows['chosen']['apply']} x{rows['chosen']['scale']:g} | "
                f"{share(st, 'style')} | {share(st, 'classifier')} | {share(rd, 'style')} | "
                f"{share(rd, 'classifier')} | {st['ppl_ratio']:.2f} | {share(st, 'loops')} |"
            )
            series.setdefault(method, []).extend(
                (
                    min(1.0, (c["ppl_ratio"] - 1) / 3) if math.isfinite(c["ppl_ratio"]) else 1.0,
                    c["style"],
                )
                for c in rows["curve"]
            )
    for method in series:
        series[method].sort()
    svg = line_chart(
        series, "style rate against fluency", "(perplexity ratio - 1) / 3", "style-word rate"
    )
    (out / "rate_vs_fluency.svg").write_text(svg)
    if results.get("notes"):
        lines += ["", "Notes on this run:", ""] + [f"- {n}" for n in results["notes"]]
    lines += ["", "![rate against fluency](rate_vs_fluency.svg)", "",
              "Replies side by side (greedy, first 3 test prompts per persona):", ""]  # fmt: skip
    for persona, entry in results["personas"].items():
        lines.append(f"### {persona}")
        for i, prompt in enumerate(results["prompts"]["test"][:3]):
            lines.append(f"- **{prompt}**")
            lines.append(f"  - unsteered: {results['unsteered_replies']['greedy'][i]!r}")
            if persona in results.get("prompted", {}):
                lines.append(
                    f"  - with the system prompt: {results['prompted'][persona]['replies'][i]!r}"
                )
            for method, rows in entry.items():
                lines.append(f"  - {method}: {rows['steered_greedy']['replies'][i]!r}")
                lines.append(
                    f"  - random ({method}'s norm): {rows['random_greedy']['replies'][i]!r}"
                )
        lines.append("")
    (out / "README.md").write_text("\n".join(lines) + "\n")
