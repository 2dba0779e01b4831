"""What the workbench remembers about one model between calls, kept on the model itself.

A few methods carry state from one call to the next on the same model: the weights fingerprint
whose statistics are served while edits pile up (:func:`workbench.edit.stats.pinned_statistics`),
the context prefixes sampled for its keys (:func:`workbench.edit.contexts.sample_prefixes`),
AlphaEdit's preserved keys, UltraEdit's running key statistics, and the interceptor through which
memory-based editors (caching, SERAC) answer. All of it lives in one :class:`ModelState` attached
to the model object: two models in one process never share it, and it is released with the model.
Modules above read and write their own field; nothing here knows what the values mean.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_ATTRIBUTE = "_workbench_state"


@dataclass
class ModelState:
    """One model's workbench state (see the module docstring); every field starts empty."""

    pinned_fingerprint: str | None = None
    """The weights fingerprint whose statistics are served inside ``pinned_statistics``."""
    prefixes: dict[tuple, list[str]] = field(default_factory=dict)
    """(weights fingerprint, prefix spec, seed) -> the sampled context templates."""
    edited_keys: dict[int, dict[int, Any]] = field(default_factory=dict)
    """AlphaEdit: id of an applied result -> layer -> the keys it wrote there."""
    normalisers: dict[int, Any] = field(default_factory=dict)
    """UltraEdit: layer -> running statistics of its [key; gradient] rows."""
    interceptor: Any = None
    """The interceptor memory-based editors answer through, while one has a rule installed."""


def state_of(model: object) -> ModelState:
    """``model``'s state, created empty on first use and stored on the model object."""
    attributes = vars(model)  # not getattr: a model wrapper may forward unknown names elsewhere
    if _ATTRIBUTE not in attributes:
        attributes[_ATTRIBUTE] = ModelState()
    return attributes[_ATTRIBUTE]
