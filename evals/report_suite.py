"""One suite's section of the report: methods on each subset, paired differences, answer
distributions, per-wording figures, the probe's fit and 50 answers for a person to read."""

from __future__ import annotations

from collections.abc import Callable

from evals.runner import BASELINES, CONTROLS
from evals.svg import bar_chart

METHOD_ORDER = ("oracle", *BASELINES, *CONTROLS)
MAIN_SUBSETS = ("all", "visible", "hidden", "headline")
RED = "red"


def _methods(res: dict) -> list[str]:
    fig = res["summary"]["figures"]["all"]
    return [m for m in METHOD_ORDER if m in fig and fig[m].get("n")]


def _chart(name: str, res: dict) -> str:
    row = res["summary"]["figures"]["headline"]
    ms = [m for m in _methods(res) if row.get(m, {}).get("n")]
    kinds = {m: res["methods"][m]["kind"] if m in res["methods"] else "baseline" for m in ms}
    return bar_chart(
        ms,
        [row[m]["value"] for m in ms],
        [row[m]["lo"] for m in ms],
        [row[m]["hi"] for m in ms],
        f"{name}: hidden subset, held-out wordings ({res['metric']}, 95% CI)",
        [kinds[m] for m in ms],
        ylabel=res["metric"],
    )


def _short(text: str | None, n: int = 90) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def suite_blocks(name: str, res: dict, fmt: Callable, cell: Callable) -> list[tuple[str, object]]:
    s = res["summary"]
    b: list[tuple[str, object]] = [("h2", f"Suite '{name}'")]
    questions = s["wordings"].get("rows", [])
    labels = res["labels"]
    b.append(
        (
            "p",
            f"{res['answer_type']} answers scored by {res['metric']}; "
            + (
                f"{len(labels)} labels ({', '.join(labels[:30])}{' ...' if len(labels) > 30 else ''}); "
                if labels
                else ""
            )
            + f"{len(questions)} question wordings; layer {res['layer']}, read span per item"
            f"{' (overridden: ' + res['positions'] + ')' if res['positions'] else ''}; "
            f"{s['subsets']['all']} test items in {s['subset_groups']['all']} groups; "
            f"{res['n_train']} train items. Text-only reader fitted on {res['text_reader']}; "
            f"hidden subset: {s['subsets']['hidden']} items in {s['subset_groups']['hidden']} "
            f"groups; headline (hidden, held-out wordings): {s['subsets']['headline']} items.",
        )
    )
    b.append(("figure", (f"{name}_headline.svg", _chart(name, res))))
    methods = _methods(res)
    subsets = [k for k in MAIN_SUBSETS if k in s["figures"]]
    rows = []
    for m in ["constant", *[x for x in methods if x != "constant"]]:
        kind = res["methods"][m]["kind"] if m in res["methods"] else "baseline"
        rows.append([m, kind, *(fmt(s["figures"][k].get(m)) for k in subsets)])
    b.append(("p", f"Every method on each subset ({res['metric']}; n = groups):"))
    b.append(("table", (["method", "kind", *subsets], rows)))
    consts = ", ".join(f"{k}: {s['constants'][k]!r}" for k in subsets)
    b.append(("p", f"The best constant answer, chosen on each subset itself: {consts}."))
    diff = s["oracle_minus"]
    if diff:
        keys = [k for k in ("all", "hidden", "headline") if k in diff]
        order = ["constant", *[m for m in methods if m not in ("oracle", "constant")]]
        rows = [[m, *(fmt(diff[k].get(m)) for k in keys)] for m in order]
        b.append(("p", "Oracle minus each method, paired on the same groups:"))
        b.append(("table", (["oracle minus", *keys], rows)))
    tags = [k for k in s["figures"] if k.startswith("tag:") or k == "heldout_question"]
    if tags:
        show = [
            m
            for m in ("oracle", "constant", "text_only", "probe_mean", "no_system")
            if m in s["figures"]["all"]
        ]
        rows = [
            [
                k.removeprefix("tag:"),
                str(s["subset_groups"][k]),
                *(fmt(s["figures"][k].get(m)) for m in show),
            ]
            for k in tags
        ]
        b.append(("p", "By split tag (groups with that tag):"))
        b.append(("table", (["tag", "groups", *show], rows)))
    dist_rows = []
    for m, d in s["distributions"].items():
        collapse = m == "oracle" and s["collapse"]
        top = f"{d['top_answer']!r}"
        dist_rows.append(
            [
                m,
                cell(top, RED if collapse else None),
                cell(f"{d['top_share']:.0%}", RED if collapse else None),
                f"{d['entropy_bits']:.2f}",
                str(d["distinct"]),
            ]
        )
    b.append(
        (
            "p",
            f"Answer distributions ({s['n_test_labels']} distinct labels in the test items; a collapse, one answer for more than half the items of a suite with more than two labels, is red):",
        )
    )
    b.append(
        ("table", (["method", "top answer", "share", "entropy (bits)", "distinct"], dist_rows))
    )
    w = s["wordings"]
    if w:
        rows = [
            [
                _short(r["question"], 70),
                "held out" if r["heldout"] else "trained",
                fmt(r["all"]),
                fmt(r["hidden"]),
            ]
            for r in w["rows"]
        ]
        b.append(("p", "The oracle per question wording:"))
        b.append(("table", (["wording", "", "all", "hidden"], rows)))
        sa, sh = w["spread_all"], w["spread_hidden"]
        b.append(
            (
                "p",
                f"Spread over held-out wordings: range {sa['range']:.3f} (std {sa['std']:.3f}) "
                f"on all items, {sh['range']:.3f} (std {sh['std']:.3f}) on hidden items.",
            )
        )
    for m, p in res.get("probe", {}).items():
        curve = ", ".join(f"{c['n_train']}: {c['value']:.3f}" for c in p.get("curve", []))
        b.append(
            (
                "p",
                f"{m}: C = {p['C']} by 3-fold cross-validation (scores {p['cv_scores']}), "
                f"fitted on {p['n_train']} train items, {p['n_classes']} classes"
                + (
                    f"; learning curve (train items: {res['metric']} on all test items) {curve}"
                    if curve
                    else ""
                )
                + ".",
            )
        )
    sample = s["sample"]
    if sample:
        rows = [
            [
                _short(x["question"], 50),
                _short(x["visible"], 110),
                _short(x["gold"], 30),
                _short(x["answer"], 40),
                f"{x['score']:.2f}",
                "hidden" if x["hidden"] else "visible",
            ]
            for x in sample
        ]
        b.append(("p", f"{len(sample)} random test items and the oracle's answers, to read:"))
        b.append(
            ("table", (["question", "visible text", "gold", "oracle", "score", "subset"], rows))
        )
    return b
