"""Edits saved to disk and replayed: :meth:`EditResult.save` writes one, :func:`load_edit` reads it.

A weight edit is replayed from its saved deltas; an edit kept in a memory (caching, SERAC) holds
none and is written again through :func:`workbench.edit.api.edit` from its requests and settings,
which is why this module sits above the editors' registry.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import EditRequest
from workbench.edit.api import edit
from workbench.edit.session import EditResult, describe_edit
from workbench.errors import InvalidRequestError
from workbench.families import parameter_values


@dataclass(repr=False)
class SavedEdit:
    """An edit read from disk: its deltas and description, ready to apply to a model."""

    method: str
    requests: list[EditRequest]
    info: dict[str, Any]
    deltas: dict[str, torch.Tensor]

    def __repr__(self) -> str:
        return describe_edit("SavedEdit", self.method, self.requests, f"tensors={len(self.deltas)}")

    def apply(self, model: TransformerBridge) -> EditResult:
        """Apply the saved deltas to ``model``; the returned result can restore it. An edit kept in
        a memory (caching, SERAC) holds no deltas: it is written again from its requests and settings."""
        if "memory_settings" in self.info:
            return edit(model, self.requests, self.method, check_targets=False, **self.info["memory_settings"])
        for name, delta in self.deltas.items():  # check everything before changing anything
            parameter = parameter_values(model, name)
            if parameter.shape != delta.shape:
                raise InvalidRequestError(
                    f"saved delta for {name} has shape {tuple(delta.shape)} but the model's is {tuple(parameter.shape)}"
                )
        result = EditResult(model, self.method, list(self.requests), dict(self.info))
        for name, delta in self.deltas.items():
            result.apply_delta(name, delta)  # moved to the parameter's device there
        return result


def load_edit(path: str | Path) -> SavedEdit:
    """Read an edit written by :meth:`EditResult.save`."""
    path = Path(path)
    record = json.loads((path / "edit.json").read_text(encoding="utf-8"))
    return SavedEdit(
        method=record["method"],
        requests=[EditRequest(**r) for r in record["requests"]],
        info=record["info"],
        deltas=load_file(path / "deltas.safetensors"),
    )
