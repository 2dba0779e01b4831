"""Reduced-precision compute: matrix products in bfloat16 where the caller asks for it.

``"bfloat16"`` runs a region under ``torch.autocast``: matrix products take bfloat16 inputs
(about 2.5x the float32 rate measured on a 2-core AMD EPYC with AVX512-BF16), while the weights,
the residual stream's sums and whatever the caller keeps stay float32. bfloat16 keeps 8 bits of
mantissa, so results move by about 1% of their size; each caller states what it compared before
offering it. ``"float32"`` changes nothing.
"""
from __future__ import annotations

from contextlib import AbstractContextManager

import torch

from workbench.errors import InvalidRequestError

COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def check_compute_dtype(dtype: str) -> str:
    """``dtype`` if it names a compute dtype, else an :class:`InvalidRequestError`."""
    if dtype not in COMPUTE_DTYPES:
        raise InvalidRequestError(f"compute dtype {dtype!r}: choose one of {sorted(COMPUTE_DTYPES)}")
    return dtype


def computing_in(dtype: str, device: torch.device | str) -> AbstractContextManager:
    """A context in which matrix products on ``device`` run in ``dtype`` (autocast; off for float32)."""
    return torch.autocast(torch.device(device).type, dtype=COMPUTE_DTYPES[check_compute_dtype(dtype)],
                          enabled=dtype != "float32")
