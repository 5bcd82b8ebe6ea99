"""Write the results: ``results.json``, ``report.md`` (+ SVG figures) and a self-contained
``report.html`` (figures inline), all from one list of blocks so the two reports agree."""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

from evals.svg import bar_chart

METHOD_ORDER = (
    "oracle",
    "linear_probe",
    "black_box",
    "training_free",
    "shuffled",
    "no_system",
    "zeros",
    "noise",
)
FIGURE_DIR = "figures"


def fmt(est: dict | None) -> str:
    """``value [lo, hi]`` with three decimals, or ``n/a``."""
    if not est or est.get("n", 0) == 0 or math.isnan(est["value"]):
        return "n/a"
    return f"{est['value']:.3f} [{est['lo']:.3f}, {est['hi']:.3f}]"


def _main_table(results: dict) -> tuple[list[str], list[list[str]]]:
    suites = results["suites"]
    header = ["method", "kind", *suites]
    methods = [m for m in METHOD_ORDER if any(m in s["methods"] for s in suites.values())]
    rows = []
    for m in methods:
        kind = next(s["methods"][m]["kind"] for s in suites.values() if m in s["methods"])
        rows.append([m, kind, *(fmt(s["methods"].get(m, {}).get("all")) for s in suites.values())])
    rows.append(["chance (1/labels)", "-", *(f"{s['chance']:.3f}" for s in suites.values())])
    rows.append(["majority class", "-", *(f"{s['majority']:.3f}" for s in suites.values())])
    rows.append(["test items", "-", *(str(s["n_test"]) for s in suites.values())])
    return header, rows


def _difference_table(results: dict) -> tuple[list[str], list[list[str]]]:
    suites = results["suites"]
    header = ["oracle minus", *suites]
    methods = [
        m for m in METHOD_ORDER[1:] if any(m in s.get("oracle_minus", {}) for s in suites.values())
    ]
    rows = [[m, *(fmt(s.get("oracle_minus", {}).get(m)) for s in suites.values())] for m in methods]
    return header, rows


def _suite_chart(name: str, suite: dict) -> str:
    ms = [m for m in METHOD_ORDER if m in suite["methods"]]
    est = [suite["methods"][m]["all"] for m in ms]
    return bar_chart(
        ms,
        [e["value"] for e in est],
        [e["lo"] for e in est],
        [e["hi"] for e in est],
        f"{name}: accuracy with 95% bootstrap CI",
        [suite["methods"][m]["kind"] for m in ms],
        reference=suite["majority"],
    )


def _ablation_chart(axis: str, ab: dict) -> str:
    rows = ab["rows"]
    return bar_chart(
        [r["name"] for r in rows],
        [r["all"]["value"] for r in rows],
        [r["all"]["lo"] for r in rows],
        [r["all"]["hi"] for r in rows],
        ab.get("title", axis),
        ["ablation"] * len(rows),
        reference=ab.get("majority"),
    )


def build_blocks(results: dict) -> list[tuple[str, object]]:
    """The report as blocks: ("h1"|"h2"|"h3"|"p"|"code"|"list"|"table"|"figure", payload)."""
    meta = results["meta"]
    b: list[tuple[str, object]] = [("h1", "Activation oracle evaluation")]
    b.append(
        (
            "p",
            "Does the oracle read the activations? Each figure is the accuracy on held-out test "
            "items with a 95% percentile bootstrap interval "
            f"({meta['n_resamples']} resamples, seed {meta['seed']}), as value [lo, hi].",
        )
    )
    b.append(("p", "Made by this command:"))
    b.append(("code", meta["command"]))
    b.append(
        (
            "list",
            [
                f"target: {meta['target']}",
                f"oracle: {meta['oracle']}",
                f"mode: {'quick (seeded random subsample)' if meta['quick'] else 'full'}",
                f"suite source: {meta['source']}",
                f"created: {meta['created']}; wall time {meta.get('seconds', 0):.0f} s, "
                f"CPU time of the process {meta.get('cpu_seconds', float('nan')):.0f} s",
            ],
        )
    )
    b.append(("h2", "Oracle vs baselines and controls"))
    b.append(
        (
            "p",
            "Baselines: linear_probe (logistic regression on the same activations, mean over read "
            "positions, trained on the suite's train split), black_box (the target itself asked "
            "the question as a new user turn), training_free (the same injection into the base "
            "model, oracle adapter off). Controls, which should fail: shuffled (activations of "
            "another example), no_system (the conversation without its system prompt), zeros, "
            "noise (Gaussian of matching norm per position). Scores are against the true label "
            "of the original conversation.",
        )
    )
    b.append(("table", _main_table(results)))
    b.append(
        (
            "p",
            "Oracle minus each method, paired on the same items (a positive interval: the oracle "
            "knows what that method does not):",
        )
    )
    b.append(("table", _difference_table(results)))
    flags = [f"{name}: {f}" for name, s in results["suites"].items() for f in s["flags"]]
    b.append(("h3", "Checks"))
    b.append(
        (
            "p",
            "A control fails, as it should, when its lower bound is not above the majority-class "
            "rate: the oracle then does no better than giving the most common answer whatever it "
            "reads. The oracle should be clearly above that rate.",
        )
    )
    b.append(("list", flags or ["every control failed (none is above the majority-class rate)."]))
    for name, suite in results["suites"].items():
        b.append(("h2", f"Suite '{name}'"))
        b.append(
            (
                "p",
                f'Question: "{suite["question"]}"; labels: {", ".join(suite["labels"])}; '
                f"layer {suite['layer']}, positions {suite['positions']}; "
                f"{suite['n_test']} test items, {suite['n_train']} probe-train items.",
            )
        )
        b.append(("figure", (f"{name}_methods.svg", _suite_chart(name, suite))))
        splits = sorted({s for m in suite["methods"].values() for s in m["by_split"]})
        header = ["method", *splits]
        rows = [
            [m, *(fmt(suite["methods"][m]["by_split"].get(s)) for s in splits)]
            for m in METHOD_ORDER
            if m in suite["methods"]
        ]
        b.append(("p", "Held-out generalisation, by split:"))
        b.append(("table", (header, rows)))
    ablations = results.get("ablations") or {}
    if ablations:
        b.append(("h2", "Ablations"))
        if meta.get("ablation_command"):
            b.append(("p", f"Ablations evaluated ({meta.get('ablation_created', '')}) by:"))
            b.append(("code", meta["ablation_command"]))
        for axis, ab in ablations.items():
            b.append(("h3", ab.get("title", axis)))
            if ab.get("note"):
                b.append(("p", ab["note"]))
            if ab.get("command"):
                b.append(("code", ab["command"]))
            if ab.get("rows"):
                b.append(("figure", (f"ablation_{axis}.svg", _ablation_chart(axis, ab))))
                rows = [[r["name"], fmt(r["all"]), r.get("detail", "")] for r in ab["rows"]]
                b.append(("table", (["setting", "accuracy", "detail"], rows)))
    if results.get("conclusions"):
        b.append(("h2", "Conclusions"))
        b.append(("list", results["conclusions"]))
    return b


def to_markdown(blocks: list[tuple[str, object]]) -> str:
    out: list[str] = []
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + str(payload))
        elif kind == "p":
            out.append(str(payload))
        elif kind == "code":
            out.append(f"```\n{payload}\n```")
        elif kind == "list":
            out.append("\n".join(f"- {x}" for x in payload))  # type: ignore[union-attr]
        elif kind == "table":
            header, rows = payload  # type: ignore[misc]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "figure":
            fname, _ = payload  # type: ignore[misc]
            out.append(f"![{fname}]({FIGURE_DIR}/{fname})")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list[tuple[str, object]]) -> str:
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Activation oracle evaluation"
        "</title><style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:3px 8px;font-size:13px}pre{background:#f4f4f4;padding:8px;overflow-x:auto}"
        "</style></head><body>"
    ]
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{escape(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{escape(str(payload))}</p>")
        elif kind == "code":
            out.append(f"<pre>{escape(str(payload))}</pre>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{escape(x)}</li>" for x in payload) + "</ul>")  # type: ignore[union-attr]
        elif kind == "table":
            header, rows = payload  # type: ignore[misc]
            head = "".join(f"<th>{escape(h)}</th>" for h in header)
            body = "".join(
                "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif kind == "figure":
            _, svg = payload  # type: ignore[misc]
            out.append(f"<figure>{svg}</figure>")
    out.append("</body></html>")
    return "\n".join(out)


def write_report(results: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write results.json, report.md, figures/*.svg and report.html into ``out_dir``."""
    out = Path(out_dir)
    (out / FIGURE_DIR).mkdir(parents=True, exist_ok=True)
    blocks = build_blocks(results)
    for kind, payload in blocks:
        if kind == "figure":
            fname, svg = payload  # type: ignore[misc]
            (out / FIGURE_DIR / fname).write_text(svg + "\n")
    paths = {
        "json": out / "results.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
    }
    paths["json"].write_text(json.dumps(results, indent=1) + "\n")
    paths["markdown"].write_text(to_markdown(blocks))
    paths["html"].write_text(to_html(blocks))
    return paths
