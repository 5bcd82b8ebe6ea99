"""Where suites come from: suite files (``--suite FILE``, the format of
:mod:`evals.suite_format`), the toy world's held-out split (:mod:`evals.toy_world`, the
default), or the small synthetic world of :mod:`evals.synthetic` (tests, dry runs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from evals.suite_format import Suite, load_suite_file, suites_from_items
from oracle.errors import OracleInputError


def pick_families(suites: dict[str, Suite], families: Sequence[str] | None) -> dict[str, Suite]:
    """The named families (all when None), failing clearly on a name that is not there."""
    if not families:
        return suites
    missing = [f for f in families if f not in suites]
    if missing:
        raise OracleInputError(f"no family {missing} in the suites; there are {list(suites)}")
    return {f: suites[f] for f in families}


def load_suites(
    files: Sequence[str | Path] = (),
    families: Sequence[str] | None = None,
    synthetic: bool = False,
    seed: int = 0,
    n_test: int | None = None,
    n_train: int | None = None,
) -> tuple[dict[str, Suite], str]:
    """The suites to run, and a line saying where they came from.

    ``files``: suite files (their families merged; a family in two files is refused). Else
    the synthetic world, or the toy world's held-out split: ``n_test`` conversations per
    suite, ``n_train`` training conversations for its probe and text reader (default: as
    many as its oracle saw). Files and the synthetic world are subsampled to ``n_test``
    groups and ``n_train`` train items when these are given.
    """
    if not files and not synthetic:
        from evals.toy_world import N_TEST, toy_world_items

        items = toy_world_items(families, seed, n_test or N_TEST, n_train)
        return suites_from_items(items, "toy world"), "toy world (held-out split)"
    if files:
        suites: dict[str, Suite] = {}
        for path in files:
            for name, suite in suites_from_items(load_suite_file(path), Path(path).name).items():
                if name in suites:
                    raise OracleInputError(f"family {name!r} is in more than one suite file")
                suites[name] = suite
        source = ", ".join(Path(p).name for p in files)
    else:
        from evals.synthetic import synthetic_items

        suites, source = suites_from_items(synthetic_items(seed), "synthetic"), "synthetic"
    suites = pick_families(suites, families)
    if n_test is not None or n_train is not None:
        suites = {
            k: s.subsample(n_test, n_train, seed + i) for i, (k, s) in enumerate(suites.items())
        }
    return suites, source
