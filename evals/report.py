"""Write the results: ``results.json``, ``report.md`` (+ SVG figures) and a self-contained
``report.html`` (figures inline), from one list of blocks so that the two reports agree.

The report leads with one table: per suite, the oracle against the best baseline on the hidden
subset asked in held-out wordings, and a verdict. A collapse (one answer for most items) is
shown in red.
"""

from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path

from evals.report_suite import suite_blocks
from evals.svg import bar_chart
from evals.verdicts import TEXT_BASELINES, VERDICT_HIDDEN, VERDICT_INCONCLUSIVE, VERDICT_NONE

FIGURE_DIR = "figures"
RED, GREEN, AMBER = "red", "green", "amber"
VERDICT_COLOR = {VERDICT_HIDDEN: GREEN, VERDICT_NONE: RED, VERDICT_INCONCLUSIVE: AMBER}


def fmt(est: dict | None) -> str:
    """``value [lo, hi]`` with three decimals, or ``n/a``."""
    if not est or est.get("n", 0) == 0 or math.isnan(est["value"]):
        return "n/a"
    return f"{est['value']:.3f} [{est['lo']:.3f}, {est['hi']:.3f}]"


def cell(text: str, color: str | None = None) -> tuple[str, str | None]:
    """A table cell with an optional colour (HTML background; Markdown: bold with a marker)."""
    return (text, color)


def headline_table(results: dict) -> tuple[list[str], list[list]]:
    header = [
        "suite",
        "verdict",
        "metric",
        "oracle: headline (hidden, held-out wordings)",
        "headline groups / all; label mix",
        "constant answer there",
        "strongest text baseline there",
        "oracle minus shuffled control there",
        "counterfactual: follows the prompt",
        "oracle's top answer (share of items)",
    ]
    rows = []
    for name, res in results["suites"].items():
        s = res["summary"]
        head = s["figures"]["headline"]
        diffs = s["oracle_minus"].get("headline", {})
        texts = [(m, head[m]) for m in TEXT_BASELINES if head.get(m, {}).get("n")]
        text = max(texts, key=lambda t: t[1]["value"]) if texts else None
        dist = s["distributions"].get("oracle", {})
        top = f"{dist.get('top_answer')!r} ({dist.get('top_share', 0):.0%})" if dist else "n/a"
        verdict = s["verdict"] or "n/a"
        mix = s["label_mix"].get("headline", {})
        mix_text = ", ".join(f"{k} {v}" for k, v in list(mix.items())[:3])
        mix_text += ", ..." if len(mix) > 3 else ""
        cf = s.get("counterfactual") or {}
        follows = "; ".join(f"{k}: {fmt(v['follows'])}" for k, v in cf.items()) or "n/a"
        rows.append(
            [
                name,
                cell(verdict, VERDICT_COLOR.get(verdict, AMBER)),
                res["metric"],
                fmt(head.get("oracle")),
                f"{s['subset_groups']['headline']} / {s['subset_groups']['all']}"
                + (f"; {mix_text}" if mix_text else ""),
                f"{s['constant']!r}: {fmt(head.get('constant'))}",
                f"{text[0]}: {fmt(text[1])}" if text else "n/a",
                fmt(diffs.get("shuffled")),
                follows,
                cell(top, RED if s["collapse"] else None),
            ]
        )
    return header, rows


def _ablation_chart(axis: str, ab: dict) -> str:
    rows = ab["rows"]
    return bar_chart(
        [r["name"] for r in rows],
        [r["all"]["value"] for r in rows],
        [r["all"]["lo"] for r in rows],
        [r["all"]["hi"] for r in rows],
        ab.get("title", axis),
        ["ablation"] * len(rows),
    )


def build_blocks(results: dict) -> list[tuple[str, object]]:
    """The report as blocks: ("h1"|"h2"|"h3"|"p"|"code"|"list"|"table"|"figure", payload);
    a list item or table cell may be ``(text, colour)``."""
    meta = results["meta"]
    b: list[tuple[str, object]] = [("h1", "Activation oracle evaluation")]
    b.append(
        (
            "p",
            "Does the oracle read the activations, or only what the visible text already says? "
            "The headline of each suite is its items hidden by construction (the visible text "
            "was made without regard to the label: the conversation stops after a user turn "
            "drawn independently of the hidden prompt, or the reply is the same for every "
            "label), asked in question wordings training never used; where a suite has no such "
            "items, those the text-only reader gives no evidence for. Every method answers the "
            "same items; the text baselines (a TF-IDF reader of the visible text, and a probe on "
            "the target's activations of the conversation without its system prompt) are scored "
            "there too. Paired counterfactuals keep the visible text and change only the hidden "
            "prompt. Figures are means over conversations (the wordings of one conversation "
            "averaged) with 95% percentile bootstrap intervals over conversations "
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
                f"mode: {'quick (a seeded random subsample)' if meta['quick'] else 'full'}",
                f"suites: {meta['source']}",
                f"created: {meta['created']}; wall time {meta.get('seconds', 0):.0f} s, "
                f"CPU time of the process {meta.get('cpu_seconds', float('nan')):.0f} s",
            ],
        )
    )
    b.append(("h2", "Verdicts"))
    b.append(("table", headline_table(results)))
    b.append(
        (
            "p",
            f"Verdicts (evals/verdicts.py), all on held-out wordings: '{VERDICT_HIDDEN}': on "
            "the headline subset the oracle is clearly above the constant answer (the most "
            "frequent training label), its shuffled control and every text baseline (paired "
            f"intervals above 0); '{VERDICT_NONE}': its answers tell nothing about the labels "
            "(balanced accuracy not above chance; open answers: not above the constant); "
            f"'{VERDICT_INCONCLUSIVE}': the shuffled control is missing, the headline subset "
            "has fewer than 10 groups, or its label mix is lopsided (fewer than 5 groups outside "
            "the majority label); 'no better than the text': otherwise, with the comparison "
            "that failed. The linear probes on the read span are not gates: they show how much "
            "the activations hold.",
        )
    )
    flags = [
        cell(f"{name}: {f}", RED if "NO INFORMATION" in f else AMBER)
        for name, res in results["suites"].items()
        for f in res["summary"]["flags"]
    ]
    b.append(("h3", "Flags"))
    b.append(
        (
            "list",
            flags
            or [
                "none: every oracle carries information, every control failed, every oracle "
                "above its constant."
            ],
        )
    )
    for name, res in results["suites"].items():
        b += suite_blocks(name, res, fmt, cell)
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
                b.append(("table", (["setting", "oracle", "detail"], rows)))
    if results.get("conclusions"):
        b.append(("h2", "Conclusions of the ablations"))
        b.append(("list", results["conclusions"]))
    return b


def _md_cell(c) -> str:
    text, color = c if isinstance(c, tuple) else (str(c), None)
    text = text.replace("|", "\\|").replace("\n", " ")
    return f"**{text}** (red)" if color == RED else text


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
            out.append("\n".join(f"- {_md_cell(x)}" for x in payload))  # type: ignore[union-attr]
        elif kind == "table":
            header, rows = payload  # type: ignore[misc]
            lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
            out.append("\n".join(lines))
        elif kind == "figure":
            fname, _ = payload  # type: ignore[misc]
            out.append(f"![{fname}]({FIGURE_DIR}/{fname})")
    return "\n\n".join(out) + "\n"


STYLE = (
    "body{font-family:sans-serif;max-width:1200px;margin:2em auto;}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
    "padding:3px 8px;font-size:13px;vertical-align:top}pre{background:#f4f4f4;padding:8px;"
    "overflow-x:auto}.red{background:#f8c9c4;color:#8b0000;font-weight:bold}"
    ".green{background:#cdeccd}.amber{background:#fbe7b5}li.red,li.amber{padding:2px 4px}"
)


def _html_cell(c, tag: str = "td") -> str:
    text, color = c if isinstance(c, tuple) else (str(c), None)
    cls = f' class="{color}"' if color else ""
    return f"<{tag}{cls}>{escape(text)}</{tag}>"


def to_html(blocks: list[tuple[str, object]]) -> str:
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Activation oracle evaluation"
        f"</title><style>{STYLE}</style></head><body>"
    ]
    for kind, payload in blocks:
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{escape(str(payload))}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{escape(str(payload))}</p>")
        elif kind == "code":
            out.append(f"<pre>{escape(str(payload))}</pre>")
        elif kind == "list":
            out.append("<ul>" + "".join(_html_cell(x, "li") for x in payload) + "</ul>")  # type: ignore[union-attr]
        elif kind == "table":
            header, rows = payload  # type: ignore[misc]
            head = "".join(f"<th>{escape(h)}</th>" for h in header)
            body = "".join("<tr>" + "".join(_html_cell(c) for c in r) + "</tr>" for r in rows)
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
    paths["json"].write_text(json.dumps(results, indent=None, separators=(",", ":")) + "\n")
    paths["markdown"].write_text(to_markdown(blocks))
    paths["html"].write_text(to_html(blocks))
    return paths
