"""Hook registration that always cleans up.

Every hook the project puts on a model goes through :func:`hooks`, which registers inside the
``try`` and removes every handle in ``finally``: a failure half-way through registering, or in
the body of the ``with``, leaves no hook behind.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

from torch import nn

HookKind = Literal["forward", "forward_pre"]
HookSpec = tuple[nn.Module, HookKind, Callable]


class StopForward(Exception):
    """Raised by a capture hook once the last needed block has run, to skip the rest."""


@contextmanager
def hooks(specs: Sequence[HookSpec]) -> Iterator[None]:
    """Register ``(module, kind, fn)`` hooks for the duration of the ``with`` block.

    ``fn`` has the signature torch expects for ``kind`` (with ``with_kwargs=False``).
    """
    handles = []
    try:
        for module, kind, fn in specs:
            if kind == "forward":
                handles.append(module.register_forward_hook(fn))
            elif kind == "forward_pre":
                handles.append(module.register_forward_pre_hook(fn))
            else:
                raise ValueError(f"unknown hook kind {kind!r}")
        yield
    finally:
        for handle in handles:
            handle.remove()


def count_hooks(model: nn.Module) -> int:
    """Number of forward / pre-forward hooks on any submodule (tests assert it returns to 0)."""
    total = 0
    for module in model.modules():
        total += len(module._forward_hooks) + len(module._forward_pre_hooks)
    return total
