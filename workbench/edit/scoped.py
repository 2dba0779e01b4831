"""Memories that hold for one model while a ``with`` block runs.

Calibration and benchmarks edit the same model many times and would repeat work whose result cannot
have changed: the unedited metrics of a case, a value search with the same arguments, ROME searches of
requests known in advance. Each such memory is only valid for the model it was opened on, with the
tokenizer it had then (another prompt prefix changes every prompt) and, where the memory describes the
weights of that moment, those weights (SHA-256, :func:`workbench.edit.stats.weights_fingerprint`).
:class:`ScopedMemory` holds that guard once, so each memory states only what it keeps.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Generic, TypeVar

from transformer_lens.model_bridge import TransformerBridge

from workbench.edit.stats import weights_fingerprint

Memory = TypeVar("Memory")


@dataclass(frozen=True)
class _Scope(Generic[Memory]):
    model: TransformerBridge
    tokenizer: object
    fingerprint: str | None
    memory: Memory


class ScopedMemory(Generic[Memory]):
    """A memory opened by :meth:`holding` and read by :meth:`of`, which gives it only for the model it was
    opened on, with the same tokenizer and (``pinned_weights``) the same weights; otherwise ``None``, and
    the caller computes afresh. Blocks nest: the innermost one holds."""

    def __init__(self, name: str, *, pinned_weights: bool) -> None:
        self._scope: ContextVar[_Scope[Memory] | None] = ContextVar(name, default=None)
        self._pinned_weights = pinned_weights

    @contextlib.contextmanager
    def holding(self, model: TransformerBridge, memory: Memory) -> Iterator[Memory]:
        fingerprint = weights_fingerprint(model) if self._pinned_weights else None
        token = self._scope.set(_Scope(model, model.tokenizer, fingerprint, memory))
        try:
            yield memory
        finally:
            self._scope.reset(token)

    def of(self, model: TransformerBridge) -> Memory | None:
        scope = self._scope.get()
        if scope is None or scope.model is not model or scope.tokenizer is not model.tokenizer:
            return None
        if scope.fingerprint is not None and weights_fingerprint(model) != scope.fingerprint:
            return None
        return scope.memory
