"""Suites, and where they come from: suite files (``--suite FILE``, the format of
:mod:`evals.suite_format`; a world's, named in its manifest, by default) or the small synthetic
world of :mod:`evals.synthetic` (tests, dry runs)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from evals.suite_format import SuiteItem, check_items, load_suite_file
from oracle.errors import OracleInputError


@dataclass
class Suite:
    """One family's items: a suite of the report. ``labels`` (sorted, for ``label`` items;
    ``yes``/``no``; none for ``text``), ``aliases`` and ``label_words`` are merged over them."""

    name: str
    answer_type: str
    train: list[SuiteItem]
    test: list[SuiteItem]
    labels: list[str] = field(default_factory=list)
    aliases: dict[str, list[str]] = field(default_factory=dict)
    label_words: dict[str, list[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.test:
            raise OracleInputError(f"suite {self.name!r} has no test item")
        items = [*self.train, *self.test]
        if not self.labels and self.answer_type != "text":
            self.labels = sorted({i.label for i in items})
        if self.answer_type == "yes_no":
            self.labels = ["yes", "no"]
        for item in items:
            for alias in item.aliases:
                known = self.aliases.setdefault(item.label, [])
                if alias not in known:
                    known.append(alias)
            for word in item.label_words:
                known = self.label_words.setdefault(item.label, [])
                if word not in known:
                    known.append(word)

    @property
    def questions(self) -> list[str]:
        return list(dict.fromkeys(i.question for i in self.test))

    @property
    def tags(self) -> list[str]:
        return sorted({t for i in self.test for t in i.tags})

    def subsample(self, n_test: int | None, n_train: int | None, seed: int) -> Suite:
        """A seeded random subsample: ``n_test`` test groups (every item of a group is kept,
        so each conversation keeps all its wordings) and ``n_train`` train items."""
        rng = random.Random(seed)
        test = self.test
        groups = list(dict.fromkeys(i.key for i in test))
        if n_test is not None and n_test < len(groups):
            keep = set(rng.sample(groups, n_test))
            test = [i for i in test if i.key in keep]
        train = self.train
        if n_train is not None and n_train < len(train):
            train = rng.sample(train, n_train)
        return Suite(
            self.name,
            self.answer_type,
            list(train),
            list(test),
            list(self.labels),
            {k: list(v) for k, v in self.aliases.items()},
            {k: list(v) for k, v in self.label_words.items()},
        )


def suites_from_items(items: Iterable[SuiteItem], where: str = "the suite") -> dict[str, Suite]:
    """Group checked items by family, in order of first appearance."""
    items = list(items)
    check_items(items, where)
    out: dict[str, Suite] = {}
    for family in dict.fromkeys(i.family for i in items):
        mine = [i for i in items if i.family == family]
        out[family] = Suite(
            family,
            mine[0].answer_type,
            [i for i in mine if i.split == "train"],
            [i for i in mine if i.split == "test"],
        )
    return out


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

    ``files``: suite files (their families merged; a family in two files is refused), else
    the synthetic world. Either is subsampled to ``n_test`` groups and ``n_train`` train
    items where these are given.
    """
    if not files and not synthetic:
        raise OracleInputError("no suite to evaluate: give suite files or the synthetic world")
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
