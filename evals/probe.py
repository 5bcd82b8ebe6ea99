"""The linear-probe baseline: multinomial logistic regression on mean-pooled activations."""

from __future__ import annotations

from collections.abc import Sequence

import torch


class LinearProbe:
    """Logistic regression (L2, full-batch L-BFGS) on standardised features.

    >>> probe = LinearProbe(["a", "b"]).fit(X_ND, ["a", "b", ...])
    >>> probe.predict(X_MD)  # list of labels
    """

    def __init__(self, labels: Sequence[str], l2: float = 1e-2, max_iter: int = 200, seed: int = 0):
        self.labels = list(labels)
        self.l2 = l2
        self.max_iter = max_iter
        self.seed = seed
        self.mean_D: torch.Tensor | None = None
        self.std_D: torch.Tensor | None = None
        self.linear: torch.nn.Linear | None = None

    def _standardise(self, x_ND: torch.Tensor) -> torch.Tensor:
        assert self.mean_D is not None and self.std_D is not None
        return (x_ND.double() - self.mean_D) / self.std_D

    def fit(self, x_ND: torch.Tensor, y: Sequence[str]) -> LinearProbe:
        """Fit on features (N, D) and their labels (N,); unknown labels raise ValueError."""
        if x_ND.ndim != 2 or x_ND.shape[0] != len(y) or not len(y):
            raise ValueError(
                f"need features (N, D) and N labels, got {tuple(x_ND.shape)}, {len(y)}"
            )
        index = {label: i for i, label in enumerate(self.labels)}
        unknown = sorted({label for label in y if label not in index})
        if unknown:
            raise ValueError(f"labels {unknown} are not in the probe's label set {self.labels}")
        target_N = torch.tensor([index[label] for label in y])
        x = x_ND.double()
        self.mean_D = x.mean(0)
        self.std_D = x.std(0, unbiased=False).clamp_min(1e-6)
        z_ND = self._standardise(x_ND)
        torch.manual_seed(self.seed)
        self.linear = torch.nn.Linear(z_ND.shape[1], len(self.labels)).double()
        torch.nn.init.zeros_(self.linear.weight)
        torch.nn.init.zeros_(self.linear.bias)
        opt = torch.optim.LBFGS(
            self.linear.parameters(), max_iter=self.max_iter, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            opt.zero_grad()
            logits_NC = self.linear(z_ND)
            loss = torch.nn.functional.cross_entropy(logits_NC, target_N)
            loss = loss + self.l2 * self.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        with torch.enable_grad():
            opt.step(closure)
        return self

    @torch.no_grad()
    def predict(self, x_ND: torch.Tensor) -> list[str]:
        """The most probable label of each row of ``x_ND`` (N, D)."""
        if self.linear is None:
            raise RuntimeError("fit the probe before predicting")
        pred_N = self.linear(self._standardise(x_ND)).argmax(-1)
        return [self.labels[i] for i in pred_N.tolist()]


def mean_pool(acts: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean over read positions: list of (n_i, D) -> (N, D)."""
    return torch.stack([a.float().mean(0) for a in acts])
