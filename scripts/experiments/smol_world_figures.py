"""The SmolLM2 world's figures as its issue states its targets, read from an evaluation's
``results.json`` (``oracle eval --world smol``): per subset, the oracle beside the constant
answer, the text baselines, the probes and the shuffled control, with bootstrap intervals over
conversations.

- persona **named** (the label is a persona, not "none"), hidden by construction, held-out
  wordings; and its best constant (the most frequent training persona);
- the default prompt (no hidden instruction): how often the oracle says "no persona";
- secret word named, hidden by construction; its best constant (the most frequent training word);
- personas never trained: how often the open answer names the role (an alias of it);
- context prediction: token-F1 beside the constant and the target continuing the text.

    python -m scripts.experiments.smol_world_figures --results results/smol/results.json
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from evals.analysis import estimate

METHODS = ("oracle", "probe_mean", "probe_last", "probe_text", "text_only", "shuffled", "no_system")


def subset_rows(suite: dict, mask: list[bool], constant: str | None, n_resamples: int) -> dict:
    groups = [it["group"] for it in suite["items"]]
    labels = [it["label"] for it in suite["items"]]
    row = {}
    for m in METHODS:
        method = suite["methods"].get(m)
        if method is None:
            continue
        values = method.get("f1") or method["correct"]
        row[m] = estimate(values, groups, mask, n_resamples, 0)
    if constant is not None:
        const = [float(y == constant) for y in labels]
        row["constant"] = estimate(const, groups, mask, n_resamples, 0) | {"answer": constant}
    row["n_groups"] = len({g for g, k in zip(groups, mask, strict=True) if k})
    return row


def figures(results: dict, n_resamples: int = 1000) -> dict:
    out: dict = {}
    for family in ("persona", "secret"):
        suite = results["suites"].get(family)
        if suite is None:
            continue
        items = suite["items"]
        held = ["heldout_question" in it["tags"] for it in items]
        hidden = [
            any(t in ("no_reply", "plain_reply", "text_free") for t in it["tags"]) for it in items
        ]
        named = [it["label"] != "none" and "unseen_persona" not in it["tags"] for it in items]
        trained_named = [y for y in suite["train_labels"] if y != "none"]
        best_named = Counter(trained_named).most_common(1)[0][0] if trained_named else None
        both = [h and q and n for h, q, n in zip(hidden, held, named, strict=True)]
        out[f"{family} named, hidden, held-out wordings"] = subset_rows(
            suite, both, best_named, n_resamples
        )
        out[f"{family} named, all"] = subset_rows(
            suite, [q and n for q, n in zip(held, named, strict=True)], best_named, n_resamples
        )
        default = ["default_system" in it["tags"] for it in items]
        out[f"{family}: the default prompt (answer 'none')"] = subset_rows(
            suite, default, "none", n_resamples
        )
        if family == "persona":
            unseen = ["unseen_persona" in it["tags"] for it in items]
            out["persona never trained (names the role)"] = subset_rows(
                suite, unseen, None, n_resamples
            )
    for family in ("context_next", "context_previous"):
        suite = results["suites"].get(family)
        if suite is None:
            continue
        s = suite["summary"]["figures"]["all"]
        out[family] = {
            k: s[k]
            for k in ("oracle", "constant", "continuation", "probe_mean", "probe_last")
            if k in s
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=Path("results/smol/results.json"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = figures(json.loads(args.results.read_text()))
    for name, row in out.items():
        shown = ", ".join(
            f"{m} {e['value']:.3f} [{e['lo']:.3f}, {e['hi']:.3f}]"
            + (f" ({e['answer']!r})" if "answer" in e else "")
            for m, e in row.items()
            if isinstance(e, dict) and e.get("n")
        )
        print(f"{name} ({row.get('n_groups', '')} groups): {shown}")
    if args.out:
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
