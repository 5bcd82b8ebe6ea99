"""One suite's section of the report: methods on each subset, paired differences, answer
distributions, per-wording figures, the probe's fit and 50 answers for a person to read."""

from __future__ import annotations

from collections.abc import Callable

from evals.runner import BASELINES, CONTROLS
from evals.svg import bar_chart, line_chart

METHOD_ORDER = ("oracle", *BASELINES, *CONTROLS)
MAIN_SUBSETS = ("all", "heldout_question", "constructed", "reader_hidden", "headline")
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
        f"{name}: headline subset, held-out wordings ({res['metric']}, 95% CI)",
        [kinds[m] for m in ms],
        ylabel=res["metric"],
    )


def _short(text: str | None, n: int = 90) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def suite_blocks(name: str, res: dict, fmt: Callable, cell: Callable) -> list[tuple[str, object]]:
    """The suite's section, in reading order: what was measured, every method on each subset,
    counterfactuals and calibration, paired differences, split tags, answer distributions,
    wordings, the probes' fits and a sample of answers."""
    s = res["summary"]
    subsets = [k for k in MAIN_SUBSETS if k in s["figures"]]
    b: list[tuple[str, object]] = [("h2", f"Suite '{name}'"), ("p", _intro(res))]
    b.append(("figure", (f"{name}_headline.svg", _chart(name, res))))
    b += _method_blocks(res, subsets, fmt)
    b += _counterfactual_blocks(s, fmt)
    b += _calibration_blocks(name, s)
    b += _difference_blocks(res, fmt)
    b += _tag_blocks(s, fmt)
    b += _distribution_blocks(s, cell)
    b += _wording_blocks(s, fmt)
    b += _probe_blocks(res)
    b += _sample_blocks(s)
    return b


def _intro(res: dict) -> str:
    """What was measured: answers and metric, labels, wordings, layer, items, the headline rule."""
    s = res["summary"]
    questions = s["wordings"].get("rows", [])
    labels = res["labels"]
    return (
        f"{res['answer_type']} answers scored by {res['metric']}; "
        + (
            f"{len(labels)} labels ({', '.join(labels[:30])}{' ...' if len(labels) > 30 else ''}); "
            if labels
            else ""
        )
        + f"{len(questions)} question wordings; layer {res['layer']}, read span per item"
        f"{' (overridden: ' + res['positions'] + ')' if res['positions'] else ''}; "
        f"{s['subsets']['all']} test items in {s['subset_groups']['all']} groups; "
        f"{res['n_train']} train items. Text-only reader fitted on {res['text_reader']}. "
        f"Headline subset ({s['subsets']['headline']} items in "
        f"{s['subset_groups']['headline']} groups, held-out wordings): {s['headline_rule']}"
        + (
            f"; its label mix (groups): {_mix(s['label_mix'].get('headline', {}))}"
            if s["label_mix"]
            else ""
        )
        + "."
    )


def _method_blocks(res: dict, subsets: list[str], fmt: Callable) -> list[tuple[str, object]]:
    """Every method on each subset, the constant and the label mix, balanced accuracy and what
    the oracle's answers tell about the labels."""
    s = res["summary"]
    methods = _methods(res)
    order = ["constant", *[x for x in methods if x != "constant"]]
    rows = []
    for m in order:
        kind = res["methods"][m]["kind"] if m in res["methods"] else "baseline"
        rows.append([m, kind, *(fmt(s["figures"][k].get(m)) for k in subsets)])
    b: list[tuple[str, object]] = [
        ("p", f"Every method on each subset ({res['metric']}; n = groups):"),
        ("table", (["method", "kind", *subsets], rows)),
    ]
    b.append(
        (
            "p",
            f"The constant answer is {s['constant']!r}, the most frequent of the "
            f"{s['constant_from']} (not chosen on the test items)."
            + (
                " Label mix of each subset (groups): "
                + "; ".join(f"{k}: {_mix(s['label_mix'].get(k, {}))}" for k in subsets)
                if s["label_mix"]
                else ""
            ),
        )
    )
    if s["balanced"]:
        rows = [[m, *(_num(s["balanced"][k].get(m)) for k in subsets)] for m in order]
        b.append(("p", "Balanced accuracy (the mean over labels of each label's accuracy):"))
        b.append(("table", (["method", *subsets], rows)))
    info = s.get("information") or {}
    if info.get("balanced"):
        b.append(
            (
                "p",
                f"What the oracle's answers tell about the labels on held-out wordings: balanced "
                f"accuracy {fmt(info['balanced'])} against chance {info['chance']:.3f}; mutual "
                f"information {info['mi_bits']:.3f} bits.",
            )
        )
    return b


def _difference_blocks(res: dict, fmt: Callable) -> list[tuple[str, object]]:
    """The oracle minus each method, paired on the same groups."""
    diff = res["summary"]["oracle_minus"]
    if not diff:
        return []
    keys = [k for k in ("heldout_question", "constructed", "headline") if k in diff]
    order = ["constant", *[m for m in _methods(res) if m not in ("oracle", "constant")]]
    rows = [[m, *(fmt(diff[k].get(m)) for k in keys)] for m in order]
    return [
        ("p", "Oracle minus each method, paired on the same groups:"),
        ("table", (["oracle minus", *keys], rows)),
    ]


def _tag_blocks(s: dict, fmt: Callable) -> list[tuple[str, object]]:
    """The main methods on the groups of each split tag."""
    tags = [k for k in s["figures"] if k.startswith("tag:") or k == "heldout_question"]
    if not tags:
        return []
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
    return [
        ("p", "By split tag (groups with that tag):"),
        ("table", (["tag", "groups", *show], rows)),
    ]


def _distribution_blocks(s: dict, cell: Callable) -> list[tuple[str, object]]:
    """Each method's answer distribution, the oracle's in red where it carries nothing."""
    rows = []
    for m, d in s["distributions"].items():
        collapse = m == "oracle" and s["collapse"]
        top = f"{d['top_answer']!r}"
        rows.append(
            [
                m,
                cell(top, RED if collapse else None),
                cell(f"{d['top_share']:.0%}", RED if collapse else None),
                f"{d['entropy_bits']:.2f}",
                str(d["distinct"]),
            ]
        )
    return [
        (
            "p",
            f"Answer distributions ({s['n_test_labels']} distinct labels in the test items; red: "
            "the oracle's answers carry no information about the labels):",
        ),
        ("table", (["method", "top answer", "share", "entropy (bits)", "distinct"], rows)),
    ]


def _wording_blocks(s: dict, fmt: Callable) -> list[tuple[str, object]]:
    """The oracle per question wording, and the spread over held-out wordings."""
    w = s["wordings"]
    if not w:
        return []
    rows = [
        [
            _short(r["question"], 70),
            "held out" if r["heldout"] else "trained",
            fmt(r["all"]),
            fmt(r["hidden"]),
        ]
        for r in w["rows"]
    ]
    sa, sh = w["spread_all"], w["spread_hidden"]
    return [
        ("p", "The oracle per question wording:"),
        ("table", (["wording", "", "all", "headline"], rows)),
        (
            "p",
            f"Spread over held-out wordings: range {sa['range']:.3f} (std {sa['std']:.3f}) "
            f"on all items, {sh['range']:.3f} (std {sh['std']:.3f}) on headline items.",
        ),
    ]


def _probe_blocks(res: dict) -> list[tuple[str, object]]:
    """Each probe's regularisation, training size and learning curve."""
    b: list[tuple[str, object]] = []
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
    return b


def _sample_blocks(s: dict) -> list[tuple[str, object]]:
    """Random test items and the oracle's answers, for a person to read."""
    sample = s["sample"]
    if not sample:
        return []
    rows = [
        [
            _short(x["question"], 50),
            _short(x["visible"], 110),
            _short(x["gold"], 30),
            _short(x["answer"], 40),
            f"{x['score']:.2f}",
            "headline" if x["hidden"] else "",
        ]
        for x in sample
    ]
    return [
        ("p", f"{len(sample)} random test items and the oracle's answers, to read:"),
        ("table", (["question", "visible text", "gold", "oracle", "score", "subset"], rows)),
    ]


def _mix(mix: dict[str, int], top: int = 6) -> str:
    shown = ", ".join(f"{k} {v}" for k, v in list(mix.items())[:top])
    return shown + (f", ... ({len(mix)} labels)" if len(mix) > top else "") if mix else "none"


def _num(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.3f}"


def _counterfactual_blocks(s: dict, fmt: Callable) -> list[tuple[str, object]]:
    cf = s.get("counterfactual") or {}
    if not cf:
        return []
    names = {
        "no_system": "system prompt removed",
        "swap": "system prompt swapped for another label's",
    }
    rows = [
        [
            names.get(kind.split(" (")[0], kind)
            + (" (hidden by construction)" if "(" in kind else ""),
            str(c["groups"]),
            fmt(c["follows"]),
            fmt(c["changed"]),
            fmt(c["right_then_follows"]),
        ]
        for kind, c in cf.items()
    ]
    return [
        (
            "p",
            "Paired counterfactuals: the same visible text under another hidden prompt (one "
            "held-out wording per conversation). 'Follows' = the answer names the label the new "
            "prompt gives; 'changed' = it names another label than for the original; the last "
            "column asks both (right on the original, then following):",
        ),
        (
            "table",
            (["counterfactual", "groups", "follows", "changed", "right, then follows"], rows),
        ),
    ]


def _calibration_blocks(name: str, s: dict) -> list[tuple[str, object]]:
    cal = s.get("calibration") or {}
    if not cal:
        return []
    names = {"agreement": "agreement of 5 samples", "probability": "answer probability"}
    rel = {
        names.get(k, k): [
            (b["confidence"], b["accuracy"]) for b in v["reliability"]["bins"] if b["n"]
        ]
        for k, v in cal.items()
    }
    cov = {
        names.get(k, k): [(c["coverage"], c["accuracy"]) for c in v["coverage"]]
        for k, v in cal.items()
    }
    eces = "; ".join(
        f"{names.get(k, k)}: ECE {v['reliability']['ece']:.3f} over {v['reliability']['n']} answers"
        for k, v in cal.items()
    )
    rows: list[list[str]] = []
    for k, v in cal.items():
        for c in v["coverage"]:
            row = [
                names.get(k, k),
                f"{c['coverage']:.2f}",
                f"{c['threshold']:.3f}",
                f"{c['accuracy']:.3f}",
            ]
            if row not in rows:  # few confidence levels (agreement): one row per threshold
                rows.append(row)
    return [
        (
            "p",
            f"Calibration of the oracle's confidence (one held-out wording per conversation): {eces}.",
        ),
        (
            "figure",
            (
                f"{name}_reliability.svg",
                line_chart(rel, f"{name}: reliability", "confidence", "accuracy", diagonal=True),
            ),
        ),
        (
            "figure",
            (
                f"{name}_coverage.svg",
                line_chart(
                    cov, f"{name}: answering only above a threshold", "coverage", "accuracy"
                ),
            ),
        ),
        ("p", "Accuracy against coverage (the oracle says 'can't tell' below the threshold):"),
        ("table", (["confidence", "coverage", "threshold", "accuracy"], rows)),
    ]
