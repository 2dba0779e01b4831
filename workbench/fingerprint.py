"""A model's identity: the SHA-256 of its weights, as statistics caches and calibrated settings key it.

Hashed over the Hugging Face parameters and buffers (names, shapes, dtypes, bytes), so the same
weights loaded from a GGUF file, a Hugging Face directory or a saved copy have the same fingerprint,
and an edit (or anything else written into a weight) changes it.

Each tensor's digest is remembered with its storage address and version counter, which every
in-place change (an edit, its restore, an optimiser step, ``load_state_dict``) moves on, so only
changed tensors are hashed again (the whole of smollm2-135m takes 0.45 s on 2 cores). Limit: a
change written through ``tensor.data`` bypasses the version counter and goes unnoticed.
"""
from __future__ import annotations

import hashlib
import weakref

import torch
from torch import nn

_TENSOR_DIGESTS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""HF model -> {name: ((data_ptr, version, shape, dtype), digest)}."""


def state_fingerprint(owner: nn.Module, state: dict[str, torch.Tensor]) -> str:
    """SHA-256 over ``state`` (a Hugging Face model's named tensors), remembering each tensor's digest
    under ``owner`` (the Hugging Face model they belong to) until the tensor changes."""
    known = _TENSOR_DIGESTS.setdefault(owner, {})
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        stamp = (tensor.data_ptr(), tensor._version, tuple(tensor.shape), str(tensor.dtype))
        if name not in known or known[name][0] != stamp:
            data = tensor.detach().cpu().contiguous().view(torch.uint8).numpy()  # hashed in place, no copy
            known[name] = (stamp, hashlib.sha256(data).digest())
        digest.update(name.encode())
        digest.update(str(stamp[2:]).encode())
        digest.update(known[name][1])
    return digest.hexdigest()
