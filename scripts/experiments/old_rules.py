"""The verdict rules before issue 25 against the current ones, on the planted suite results of
``tests/evals/planted_results.py`` (each built by hand, so its right verdict is known).

The old ``evals/summary.py`` and ``evals/analysis.py`` are read from git at ``--commit`` (the
last commit before the rules changed) into a temporary package and run on the same planted
results as the current ones; a table of both verdicts is printed (and written with ``--out``).
No model runs; a few seconds.

    python -m scripts.experiments.old_rules --commit eb09178
"""

from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
import tempfile
from pathlib import Path

from evals.summary import summarise_suite
from tests import planted_results as P

# (case, the right verdict, how to build it)
CASES = [
    ("lopsided yes/no (a perfect oracle)", "reads hidden state", P.lopsided_yes_no),
    ("missing shuffled control", "inconclusive", lambda: P.balanced_suite(with_shuffled=False)),
    ("majority label 60% (a perfect oracle)", "reads hidden state", P.majority_label_suite),
    ("text leak with hidden items", "no better than the text", P.text_leak_suite),
    ("names the label only with the text", "no better than the text", P.names_only_with_text),
    ("6 hidden groups (a good oracle)", "inconclusive", P.few_hidden_groups),
]


def old_summariser(commit: str, root: Path):
    """``summarise_suite`` of ``evals/summary.py`` at ``commit`` (its ``evals.analysis``
    import pointed at the same commit's file)."""
    pkg = root / "old_evals"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name in ("summary", "analysis"):
        text = subprocess.run(
            ["git", "show", f"{commit}:evals/{name}.py"], check=True, capture_output=True, text=True
        ).stdout
        text = text.replace(
            "from evals import analysis as A", "from old_evals import analysis as A"
        )
        (pkg / f"{name}.py").write_text(text)
    sys.path.insert(0, str(root))
    return importlib.import_module("old_evals.summary").summarise_suite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commit", default="eb09178", help="the commit of the old rules")
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = old_summariser(args.commit, Path(tmp))
        lines = [
            "| planted case | right verdict | old rules | new rules |",
            "| --- | --- | --- | --- |",
        ]
        for case, right, build in CASES:
            o = old(build(), n_resamples=300, seed=0)
            n = summarise_suite(build(), n_resamples=300, seed=0)
            lines.append(
                f"| {case} | {right} | {o['verdict']} ({o['verdict_why']}) | "
                f"{n['verdict']} ({n['verdict_why']}) |"
            )
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
