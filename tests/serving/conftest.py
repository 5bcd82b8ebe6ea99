"""Shared by the serving tests: a tiny oracle on disk and its hf engine, one per test module
(a module may set ``READ_LAYERS`` to read other blocks than the default (1,))."""

from __future__ import annotations

import pytest

from oracle.engines.hf import HFEngine
from tests.helpers import make_oracle_dir


@pytest.fixture(scope="module")
def oracle_dirs(request, tmp_path_factory):
    """(base model dir, oracle dir) of a tiny Llama with an untrained, non-trivial adapter."""
    read_layers = getattr(request.module, "READ_LAYERS", (1,))
    name = request.module.__name__.rsplit(".", 1)[-1]
    return make_oracle_dir(tmp_path_factory.mktemp(name), "llama", read_layers=read_layers)


@pytest.fixture(scope="module")
def engine(oracle_dirs):
    base, oracle = oracle_dirs
    return HFEngine.load(str(base), str(oracle), dtype="float32", device="cpu")
