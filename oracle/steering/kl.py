"""The KL term of a steering run, bounded in memory.

KL(steered || unsteered) of the target's next-token distributions on neutral prompts, the mean
over their real tokens. Steering changes a position's distribution only from the first position
it touches on (attention is causal), so the unsteered log-probabilities are needed only there:
each prompt's last position for apply 'reply' and 'first' (B x V, where the whole run used to
keep B x T x V: about 17 GB at 64 prompts x 512 tokens x a 128k vocabulary), every real position
for 'all'. They are kept while they fit ``REFERENCE_BUDGET`` bytes, and beyond it recomputed
(without gradients) at each step; the logits are computed at those positions only
(``logits_to_keep``), in both passes.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch
from torch import nn

from oracle.steering.apply import steer_mask

REFERENCE_BUDGET = 256 * 2**20  # bytes of unsteered log-probabilities kept for a run


def enforce_trainable(models: Sequence[nn.Module], trainable: Sequence[nn.Parameter]) -> None:
    """Only ``trainable`` requires gradients in ``models`` (peft re-enables an adapter's when
    it switches adapters: re-asserted after each switch)."""
    keep = {id(p) for p in trainable}
    for model in models:
        for param in model.parameters():
            param.requires_grad_(id(param) in keep)


class SteeringCore(Protocol):
    """What the KL term needs of a steering run's state (``oracle.steering.run._Steerer``)."""

    cfg: Any  # SteerConfig: its ``apply``
    ao: Any  # the ActivationOracle: ``target``, ``adapter_disabled()``
    models: Sequence[nn.Module]
    trainable: Sequence[nn.Parameter]

    def steered(
        self, vector: torch.Tensor | None, mask_BT: torch.Tensor | None
    ) -> AbstractContextManager: ...


class KLTerm:
    """KL(steered || unsteered) on the token rows ``ids_BT`` (right-padded, ``mask_BT``).

    >>> term = KLTerm(core, ids_BT, mask_BT)
    >>> kl = term(vector)  # differentiable in the steering
    """

    def __init__(
        self,
        core: SteeringCore,
        ids_BT: torch.Tensor,
        mask_BT: torch.Tensor,
        budget: int = REFERENCE_BUDGET,
    ) -> None:
        self.core, self.ids_BT, self.mask_BT = core, ids_BT, mask_BT
        lengths = mask_BT.sum(dim=1).long().tolist()  # right padding: real tokens come first
        # apply 'reply' or 'first': at each prompt's last token, the one that starts the reply
        self.steer_BT = steer_mask(core.cfg.apply, mask_BT.shape[1], [(n - 1, n) for n in lengths])
        real_BT = mask_BT.bool()
        if self.steer_BT is None:
            changed_BT = real_BT
        else:
            changed_BT = (self.steer_BT.to(mask_BT.device).cumsum(dim=1) > 0) & real_BT
        self.keep_K = changed_BT.any(dim=0).nonzero()[:, 0]  # the positions whose logits count
        self.changed_BK = changed_BT[:, self.keep_K]
        self.n_real = int(real_BT.sum())
        vocab = core.ao.target.get_output_embeddings().weight.shape[0]
        self.ref_NV: torch.Tensor | None = None
        if int(self.changed_BK.sum()) * vocab * 4 <= budget:
            self.ref_NV = self.reference()

    def _logp(self) -> torch.Tensor:
        """(N, V) log-probabilities of the target as it runs now, at the changed positions."""
        logits_BKV = self.core.ao.target(
            input_ids=self.ids_BT,
            attention_mask=self.mask_BT,
            use_cache=False,
            logits_to_keep=self.keep_K,
        ).logits
        return logits_BKV.float().log_softmax(dim=-1)[self.changed_BK]

    @torch.no_grad()
    def reference(self) -> torch.Tensor:
        """The unsteered log-probabilities (N, V) at the positions steering can change."""
        with self.core.ao.adapter_disabled():
            return self._logp()

    @property
    def reference_bytes(self) -> int:
        """Bytes of reference log-probabilities the run keeps (0: recomputed each step)."""
        return 0 if self.ref_NV is None else self.ref_NV.numel() * self.ref_NV.element_size()

    def __call__(self, vector: torch.Tensor | None) -> torch.Tensor:
        """The KL term, mean over the real tokens, differentiable in the steering."""
        core = self.core
        ref_NV = self.ref_NV if self.ref_NV is not None else self.reference()
        with core.steered(vector, self.steer_BT):
            enforce_trainable(core.models, core.trainable)
            logp_NV = self._logp()
        enforce_trainable(core.models, [])
        kl_N = (logp_NV.exp() * (logp_NV - ref_NV)).sum(dim=-1)
        return kl_N.sum() / self.n_real
