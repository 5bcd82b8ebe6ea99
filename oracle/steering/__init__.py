"""Steering through the oracle: optimise a vector (or a LoRA) on the target so that the frozen
oracle gives a chosen answer about the target's activations, then generate with it.

- :mod:`~oracle.steering.config`: :class:`SteerConfig` (every setting, defined once) and
  :class:`SteeringResult`;
- :mod:`~oracle.steering.methods`: the methods (``vector``, ``lora``), one registered class each;
- :mod:`~oracle.steering.apply`: where a vector is added (``all``, ``reply``, ``first``), one
  registered mode each;
- :mod:`~oracle.steering.run`: the optimisation (:class:`SteeringRun`, :func:`steer`);
- :mod:`~oracle.steering.caa`: contrastive activation addition, the baseline method;
- :mod:`~oracle.steering.choose` and :mod:`~oracle.steering.make`: a vector made, then its
  apply mode and scale chosen on validation prompts and saved with it;
- :mod:`~oracle.steering.generate`: the target's generation, steered or not (replies to
  prompts, chat turns streamed); :mod:`~oracle.steering.measure`: steered capture and reply
  perplexity;
- :mod:`~oracle.steering.hooks`, :mod:`~oracle.steering.io`, :mod:`~oracle.steering.lora`:
  the hooks, the vector on disk, the LoRA on disk.
"""

from __future__ import annotations

import importlib

# Imported lazily, so that reading a config (the CLI's options) does not load torch.
_EXPORTS = {
    "APPLIES": "oracle.steering.apply",
    "APPLY_MODES": "oracle.steering.apply",
    "check_apply": "oracle.steering.apply",
    "steer_mask": "oracle.steering.apply",
    "READS": "oracle.steering.config",
    "SteerConfig": "oracle.steering.config",
    "SteeringResult": "oracle.steering.config",
    "capture_steered": "oracle.steering.measure",
    "generate": "oracle.steering.generate",
    "reply_nll": "oracle.steering.measure",
    "SteeringVector": "oracle.steering.io",
    "METHODS": "oracle.steering.methods",
    "STEER_ADAPTER": "oracle.steering.lora",
    "SteeringRun": "oracle.steering.run",
    "resolve_layers": "oracle.steering.run",
    "steer": "oracle.steering.run",
    "caa_vector": "oracle.steering.caa",
    "choose_use": "oracle.steering.choose",
    "make_steering_vector": "oracle.steering.make",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'oracle.steering' has no attribute {name!r}")
