"""Reversible weight edits: every editor writes through an :class:`EditResult`.

An :class:`EditResult` keeps a copy of each parameter before its first change and the delta
applied to it, so an edit can be inspected (``deltas``), undone bit-exactly (``restore()`` or
leaving a ``with`` block), saved (safetensors + JSON) and replayed on another copy of the model
(:func:`load_edit` then :meth:`SavedEdit.apply`). Parameters that no editor touches are never
written, so they stay bit-identical.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import EditRequest
from workbench.errors import InvalidRequestError
from workbench.families import add_to_parameter, parameter_values, set_parameter


def describe_edit(kind: str, method: str, requests: list[EditRequest], detail: str) -> str:
    """A one-line description of an edit (its repr): method, the first two requests, ``detail``."""
    shown = ", ".join(f"{r.subject!r} -> {r.target_new!r}" for r in requests[:2])
    more = f" and {len(requests) - 2} more" if len(requests) > 2 else ""
    return f"{kind}(method={method!r}, {len(requests)} request(s): {shown}{more}, {detail})"


@dataclass(repr=False)
class EditResult:
    """The record of an edit applied to ``model``; also a context manager that undoes it on exit."""

    model: TransformerBridge
    method: str
    requests: list[EditRequest]
    info: dict[str, Any] = field(default_factory=dict)
    """Method-specific details: layers, hyper-parameters, losses, timings."""
    _originals: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _deltas: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    _on_restore: list[Callable[[], None]] = field(default_factory=list, repr=False)
    restored: bool = False

    @property
    def deltas(self) -> dict[str, torch.Tensor]:
        """Hugging Face parameter name -> total change applied to it (stored layout)."""
        return dict(self._deltas)

    @property
    def layers(self) -> list[int]:
        """The layers whose MLP output projection this edit changed."""
        from workbench.families import mlp_out_projection

        return [l for l in range(self.model.cfg.n_layers) if mlp_out_projection(self.model, l).name in self._deltas]

    def apply_delta(self, name: str, delta: torch.Tensor) -> None:
        """Add ``delta`` to the parameter ``name``, remembering its original value first."""
        if self.restored:
            raise InvalidRequestError("this edit was restored; start a new edit instead")
        values = parameter_values(self.model, name)
        if delta.shape != values.shape:
            raise InvalidRequestError(f"delta of shape {tuple(delta.shape)} for {name} of shape {tuple(values.shape)}")
        if name not in self._originals:
            self._originals[name] = values.detach().clone()
            self._deltas[name] = torch.zeros_like(values)
        delta = delta.to(values.device, values.dtype)
        add_to_parameter(self.model, name, delta)
        self._deltas[name] += delta

    def set_change(self, name: str, change: torch.Tensor) -> None:
        """Make the parameter ``name`` its original value plus ``change`` (the total, not an increment)."""
        values = parameter_values(self.model, name)
        if self.restored:
            raise InvalidRequestError("this edit was restored; start a new edit instead")
        if change.shape != values.shape:
            raise InvalidRequestError(f"change of shape {tuple(change.shape)} for {name} of shape {tuple(values.shape)}")
        if name not in self._originals:
            self.apply_delta(name, torch.zeros_like(values))
        change = change.to(values.device, values.dtype)
        with torch.no_grad():
            set_parameter(self.model, name, self._originals[name] + change)
        self._deltas[name] = change.clone()

    def on_restore(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once when this edit is restored (an editor's bookkeeping about the
        edits applied to a model, e.g. AlphaEdit's preserved keys)."""
        self._on_restore.append(callback)

    def restore(self) -> None:
        """Put every changed parameter back, bit-exactly. Safe to call twice.

        Several edits applied on top of each other must be restored in reverse order (last first),
        as the scaling runner does; each restores the weights it found.
        """
        with torch.no_grad():
            for name, original in reversed(self._originals.items()):
                set_parameter(self.model, name, original)
        if not self.restored:
            for callback in self._on_restore:
                callback()
        self.restored = True

    def __repr__(self) -> str:
        return describe_edit("EditResult", self.method, self.requests,
                             f"tensors changed={len(self._deltas)}, restored={self.restored}")

    def __enter__(self) -> EditResult:
        return self

    def __exit__(self, *exc_info) -> None:
        self.restore()

    def save(self, path: str | Path) -> Path:
        """Write ``path/deltas.safetensors`` and ``path/edit.json``; returns ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        save_file({name: delta.detach().cpu().contiguous() for name, delta in self._deltas.items()},
                  path / "deltas.safetensors")
        record = {"method": self.method, "requests": [asdict(r) for r in self.requests], "info": self.info}
        (path / "edit.json").write_text(json.dumps(record, indent=2, default=str) + "\n", encoding="utf-8")
        return path
