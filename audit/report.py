"""``report.html``: one self-contained page (inline CSS and SVG, no script, no network).

Sections: a summary table (one row per question), the answer distribution of each question
(a bar chart of its most common answers and, for yes/no questions, a histogram of P(yes)),
the records flagged above a threshold with their text, and the errors.
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence

from audit.logformat import ActivationLog
from audit.tally import QuestionTally, Tally

TOP_ANSWERS = 10
TEXT_CHARS = 1500

CSS = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#222;max-width:70rem}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}
th,td{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top;font-size:.9rem}
th{background:#f2f2f2} td.num{text-align:right} pre{white-space:pre-wrap;margin:0;max-width:40rem}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem} figure{margin:0} figcaption{font-size:.85rem}
.muted{color:#777}
"""


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value))


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str) -> str:
    """Horizontal bars as inline SVG: one ``<rect>`` per label."""
    row_h, label_w, bar_w = 22, 260, 300
    height = row_h * max(len(labels), 1) + 30
    top = max(values, default=0) or 1
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 60}" '
        f'height="{height}" role="img" aria-label="{esc(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = 24 + i * row_h
        w = max(1.0, bar_w * value / top)
        short = label if len(label) <= 38 else label[:37] + "…"
        parts += [
            f'<text x="{label_w - 6}" y="{y + 14}" font-size="12" text-anchor="end">'
            f"<title>{esc(label)}</title>{esc(short)}</text>",
            f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" fill="#4c78a8"/>',
            f'<text x="{label_w + w + 4:.1f}" y="{y + 14}" font-size="12">{value:g}</text>',
        ]
    parts.append("</svg>")
    return "".join(parts)


def histogram(counts: Sequence[int], title: str) -> str:
    """Vertical bars of binned P(yes) counts (equal-width bins over [0, 1]) as inline SVG."""
    bins = len(counts)
    width, height, pad = 360, 180, 24
    top = max(counts, default=0) or 1
    bar = (width - 2 * pad) / bins
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
        f'height="{height + 40}" role="img" aria-label="{esc(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{esc(title)}</text>',
    ]
    for i, c in enumerate(counts):
        h = max(1.0, (height - 30) * c / top) if c else 0.0
        x, y = pad + i * bar, height - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
            f'fill="#f58518"><title>{i / bins:.1f}-{(i + 1) / bins:.1f}: {c}</title></rect>'
        )
        if c:
            parts.append(f'<text x="{x + 2:.1f}" y="{y - 3:.1f}" font-size="10">{c}</text>')
    for t in (0.0, 0.5, 1.0):
        parts.append(
            f'<text x="{pad + t * (width - 2 * pad):.1f}" y="{height + 16}" font-size="11" '
            f'text-anchor="middle">{t:g}</text>'
        )
    parts.append(
        f'<text x="{width / 2}" y="{height + 34}" font-size="11" text-anchor="middle">P(yes)</text>'
    )
    parts.append("</svg>")
    return "".join(parts)


def build_report(
    results: Tally | Iterable[dict],
    questions: Sequence[str],
    logs: ActivationLog | None = None,
    threshold: float = 0.5,
    title: str = "Activation audit",
) -> str:
    """The report's HTML for result rows (unique pairs) of ``questions``, or their
    :class:`~audit.tally.Tally` (then ``threshold`` is the tally's own).

    ``logs`` supplies the text of flagged records (read from the index only, no tensors).
    A record is flagged for a question when its P(yes) is at least ``threshold``.
    """
    if isinstance(results, Tally):
        tally = results
    else:
        tally = Tally(threshold)
        for row in results:
            tally.add(row)
    order = list(questions) + sorted(q for q in tally.questions if q not in questions)
    per_q = {q: tally.questions.get(q, QuestionTally()) for q in order}
    flagged = {q: per_q[q].flagged_rows() for q in order}
    texts = _texts(logs, {r["record_id"] for q in order for r in flagged[q]})
    body = [
        f"<h1>{esc(title)}</h1>",
        _overview(tally, logs),
        "<h2>Summary</h2>",
        _summary_table(order, per_q),
        "<h2>Answer distributions</h2>",
    ]
    for n, q in enumerate(order):
        top = per_q[q].answers.most_common(TOP_ANSWERS)
        charts = [bar_chart([a or "(empty)" for a, _ in top], [c for _, c in top], "Top answers")]
        if per_q[q].p_yes_n:
            charts.append(histogram(per_q[q].p_yes_bins, "P(yes) distribution"))
        body.append(
            f'<h3 id="q{n}">{esc(q)}</h3><div class="charts">'
            + "".join(f"<figure>{c}</figure>" for c in charts)
            + "</div>"
        )
    body.append(f"<h2>Flagged records (P(yes) &ge; {tally.threshold:g})</h2>")
    body.append(_flagged_tables(order, per_q, flagged, texts))
    body.append(f"<h2>Errors ({tally.errors})</h2>")
    body.append(_errors_table(tally))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def _texts(logs: ActivationLog | None, wanted: set[str]) -> dict[str, str]:
    if logs is None or not wanted:
        return {}
    return {
        r.record_id: r.text
        for r in logs.iter_records(select=wanted.__contains__, load=False)
        if r.text
    }


def _overview(tally: Tally, logs: ActivationLog | None) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    items = [("generated", now), ("pairs", tally.pairs), ("errors", tally.errors)]
    if logs is not None:
        m = logs.manifest
        items = [
            ("log", logs.path.name),
            ("model", m.model),
            ("layers", ", ".join(map(str, m.layers))),
            ("records", m.record_count),
        ] + items
    items.append(("flag threshold", tally.threshold))
    return (
        "<table>"
        + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
        + "</table>"
    )


def _summary_table(order: list[str], per_q: dict[str, QuestionTally]) -> str:
    head = (
        "<tr><th>question</th><th>pairs</th><th>errors</th><th>flagged</th>"
        "<th>mean P(yes)</th><th>most common answer</th></tr>"
    )
    lines = [head]
    for n, q in enumerate(order):
        t = per_q[q]
        mean = t.mean_p_yes
        common = t.answers.most_common(1)
        common_text = f"{common[0][0]} ({common[0][1]})" if common else "–"
        lines.append(
            f'<tr><td><a href="#q{n}">{esc(q)}</a></td><td class="num">{t.pairs}</td>'
            f'<td class="num">{t.errors}</td>'
            f'<td class="num">{t.flagged if t.p_yes_n else "–"}</td>'
            f'<td class="num">{"–" if mean is None else f"{mean:.3f}"}</td>'
            f"<td>{esc(common_text)}</td></tr>"
        )
    return "<table>" + "".join(lines) + "</table>"


def _flagged_tables(order, per_q, flagged, texts) -> str:
    parts = []
    for q in order:
        rows = flagged[q]
        if not rows:
            continue
        total = per_q[q].flagged
        parts.append(f"<h3>{esc(q)} <span class='muted'>({total} flagged)</span></h3>")
        parts.append(
            "<table><tr><th>record</th><th>layer</th><th>P(yes)</th><th>answer</th>"
            "<th>text</th></tr>"
        )
        for r in rows:
            text = texts.get(r["record_id"], "")
            if len(text) > TEXT_CHARS:
                text = text[:TEXT_CHARS] + " …"
            parts.append(
                f"<tr><td>{esc(r['record_id'])}</td><td>{esc(r.get('layer'))}</td>"
                f'<td class="num">{r["p_yes"]:.3f}</td><td>{esc(r.get("answer"))}</td>'
                f"<td><pre>{esc(text)}</pre></td></tr>"
            )
        parts.append("</table>")
        if total > len(rows):
            parts.append(
                f"<p class='muted'>The {total - len(rows)} with lower P(yes) are in the "
                "results.</p>"
            )
    return "".join(parts) or "<p class='muted'>None.</p>"


def _errors_table(tally: Tally) -> str:
    if not tally.errors:
        return "<p class='muted'>None.</p>"
    parts = ["<table><tr><th>error</th><th>pairs</th></tr>"]
    parts += [
        f"<tr><td>{esc(e)}</td><td class='num'>{c}</td></tr>"
        for e, c in tally.error_causes.most_common(50)
    ]
    parts.append("</table><table><tr><th>record</th><th>question</th><th>error</th></tr>")
    parts += [
        f"<tr><td>{esc(r['record_id'])}</td><td>{esc(r['question'])}</td>"
        f"<td>{esc(r['error'])}</td></tr>"
        for r in tally.error_rows
    ]
    parts.append("</table>")
    return "".join(parts)
