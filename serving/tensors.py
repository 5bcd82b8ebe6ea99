"""Tensors over JSON: base64 of raw little-endian bytes, with shape and dtype beside them."""

from __future__ import annotations

import base64
import binascii
import math

import numpy as np
import torch

from oracle.errors import OracleInputError
from serving.schemas import EncodedTensor

NUMPY_DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def encode_tensor(tensor: torch.Tensor, dtype: str = "float32") -> EncodedTensor:
    """Encode ``tensor`` (any shape) as base64 of its ``dtype`` bytes."""
    array = tensor.detach().float().cpu().numpy().astype(NUMPY_DTYPES[dtype])
    data = base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")
    return EncodedTensor(data=data, shape=list(array.shape), dtype=dtype)


def decode_activations(encoded: EncodedTensor, d_model: int, max_positions: int) -> torch.Tensor:
    """Decode activations shaped (n, d_model) or (1, n, d_model) into float32 (n, d_model).

    Raises :class:`OracleInputError` naming the problem: bad base64, a byte count that does not
    match the shape, a wrong hidden size, too many positions, NaN or inf.
    """
    shape = list(encoded.shape)
    if any(s < 1 for s in shape):
        raise OracleInputError(f"activations.shape must be positive, got {shape}")
    if len(shape) == 3:
        if shape[0] != 1:
            raise OracleInputError(
                f"activations.shape {shape}: a 3-d tensor must hold one layer (1, n, d_model)"
            )
        shape = shape[1:]
    if len(shape) != 2:
        raise OracleInputError(
            f"activations.shape must be (n_positions, d_model) or (1, n, d_model), got {shape}"
        )
    n, d = shape
    if d != d_model:
        raise OracleInputError(
            f"activations have hidden size {d}, but the oracle's d_model is {d_model}"
        )
    if n > max_positions:
        raise OracleInputError(
            f"activations hold {n} positions, more than the server's limit of {max_positions}"
        )
    dtype = NUMPY_DTYPES[encoded.dtype]
    try:
        raw = base64.b64decode(encoded.data, validate=True)
    except (binascii.Error, ValueError):
        raise OracleInputError("activations.data is not valid base64") from None
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise OracleInputError(
            f"activations.data holds {len(raw)} bytes, but shape {shape} of {encoded.dtype} "
            f"needs {expected}"
        )
    acts_PD = torch.from_numpy(np.frombuffer(raw, dtype=dtype).astype(np.float32).reshape(n, d))
    if not torch.isfinite(acts_PD).all():
        raise OracleInputError("activations contain NaN or inf")
    return acts_PD
