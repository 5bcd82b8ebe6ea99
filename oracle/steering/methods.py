"""What a steering run trains: the methods, one registered class each.

- ``vector``: a vector (d_model,) added to the output of the steering block, through the apply
  modes of :mod:`oracle.steering.apply`; Adam moves it in units of the residual norm.
- ``lora``: a LoRA on every linear layer of the target (its own peft adapter, ``steer``);
  applied everywhere (apply ``all``).

A method owns its trainable parameters and knows how to run the target steered by them. The
registry is read without torch (the CLI's options come from it); a method loads what it needs
when a run creates it.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

from oracle.steering.apply import APPLIES
from oracle.steering.lora import STEER_ADAPTER, add_steering_lora

if TYPE_CHECKING:
    import torch
    from torch import nn

    from oracle.oracle import ActivationOracle


class SteeringMethod(ABC):
    """The trainable state of one run and the steered target it makes."""

    name: str = ""
    applies: tuple[str, ...] = ("all",)  # apply modes this method supports
    adapter: str | None = None  # the peft adapter it trains on the target, if any

    def __init__(self, ao: ActivationOracle, cfg: Any, reference_norm: float, device) -> None:
        self.ao, self.cfg, self.reference_norm = ao, cfg, reference_norm
        self.params: list[nn.Parameter] = []

    def vector(self) -> torch.Tensor | None:
        """The current steering vector (d_model,), or None for methods without one."""
        return None

    @abstractmethod
    def steered(
        self, layer: int, vector: torch.Tensor | None, mask_BT: torch.Tensor | None
    ) -> contextlib.AbstractContextManager:
        """The target (oracle adapter off) steered at block ``layer`` by this method."""

    def after_step(self) -> float:
        """Called after each optimiser step (e.g. to bound the norm); returns the vector's norm."""
        return 0.0


class VectorMethod(SteeringMethod):
    name = "vector"
    applies = APPLIES

    def __init__(self, ao: ActivationOracle, cfg: Any, reference_norm: float, device) -> None:
        import torch

        super().__init__(ao, cfg, reference_norm, device)
        # Adam moves each coordinate ~lr units per step: lr is in residual norms per step
        self.unit = reference_norm / math.sqrt(ao.d_model)
        self.raw_D = torch.zeros(ao.d_model, device=device, requires_grad=True)
        self.params = [self.raw_D]

    def vector(self) -> torch.Tensor:
        return self.raw_D * self.unit

    @contextlib.contextmanager
    def steered(self, layer, vector, mask_BT):
        from oracle.steering.hooks import add_vector

        with self.ao.adapter_disabled(), add_vector(self.ao.target, layer, vector, mask_BT=mask_BT):
            yield

    def after_step(self) -> float:
        import torch

        with torch.no_grad():
            if self.cfg.max_norm is not None:
                bound = self.cfg.max_norm * self.reference_norm / self.unit
                shrink = torch.clamp(bound / self.raw_D.norm().clamp_min(1e-12), max=1.0)
                self.raw_D.mul_(shrink)
            return float(self.raw_D.norm() * self.unit)


class LoraMethod(SteeringMethod):
    name = "lora"
    applies = ("all",)
    adapter = STEER_ADAPTER

    def __init__(self, ao: ActivationOracle, cfg: Any, reference_norm: float, device) -> None:
        super().__init__(ao, cfg, reference_norm, device)
        self.params = add_steering_lora(ao, cfg.lora_r, cfg.lora_alpha, cfg.seed)

    def steered(self, layer, vector, mask_BT):
        from oracle.steering.hooks import active_adapter

        return active_adapter(self.ao.target, STEER_ADAPTER)


METHODS: dict[str, type[SteeringMethod]] = {m.name: m for m in (VectorMethod, LoraMethod)}
