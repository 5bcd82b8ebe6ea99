"""Percentile bootstrap confidence intervals, seeded, so every figure is reproducible."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 1000
SEED = 0


@dataclass(frozen=True)
class Estimate:
    """A mean with its percentile-bootstrap interval [lo, hi] over ``n`` items."""

    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.lo:.3f}, {self.hi:.3f}]"


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    n_resamples: int = N_RESAMPLES,
    seed: int = SEED,
    level: float = 0.95,
) -> Estimate:
    """Mean of ``values`` (n,) with a percentile bootstrap interval at ``level``.

    Resamples the items with replacement ``n_resamples`` times with a generator seeded by
    ``seed``; the interval is the (1-level)/2 and (1+level)/2 quantiles of the resampled means.
    An empty input gives NaNs (and n=0), so a missing split shows as such instead of failing.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"values must be one-dimensional, got shape {x.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if x.size == 0:
        return Estimate(float("nan"), float("nan"), float("nan"), 0)
    rng = np.random.default_rng(seed)
    idx_RN = rng.integers(0, x.size, size=(n_resamples, x.size))
    means_R = x[idx_RN].mean(axis=1)
    lo, hi = np.quantile(means_R, [(1 - level) / 2, (1 + level) / 2])
    return Estimate(float(x.mean()), float(lo), float(hi), int(x.size))
