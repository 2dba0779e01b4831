"""Saving and loading labelled results as JSON.

Results are dataclasses whose fields are plain values, lists, dicts or numpy arrays; arrays are
stored as nested lists with their dtype, so a result reloads equal to what was saved.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from workbench.errors import DatasetFormatError

ResultT = TypeVar("ResultT", bound="JsonResult")


class JsonResult:
    """Mixin giving a dataclass ``save(path)`` and ``load(path)`` through JSON, ``plot()``, and a one-line repr
    (arrays by shape, long lists and dicts by size) for Jupyter; declare the dataclass with
    ``repr=False`` so that this repr is the one used."""

    def __repr__(self) -> str:
        fields = [f"{f.name}={_summary(getattr(self, f.name))}" for f in dataclasses.fields(self) if f.repr]
        return f"{type(self).__name__}({', '.join(fields)})"

    def plot(self, *args: Any, **kwargs: Any):
        """This result's figure: :func:`workbench.plot.plot`, which picks the plot function for the
        result's type (``args`` and ``kwargs`` go to it, e.g. ``ax=`` for a heatmap). The plot layer
        is looked up when called, so result types do not import it."""
        return importlib.import_module("workbench.plot").plot(self, *args, **kwargs)

    def save(self, path: str | Path) -> Path:
        """Write the result to ``path`` as JSON; returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fields = {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)}
        record = {"type": type(self).__name__, "fields": fields}
        path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls: type[ResultT], path: str | Path) -> ResultT:
        """Read a result written by :meth:`save`."""
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        if record.get("type") != cls.__name__:
            raise DatasetFormatError(f"{path} holds a {record.get('type')!r}, not a {cls.__name__}")
        return cls(**{name: _decode(value) for name, value in record["fields"].items()})


def _summary(value: Any) -> str:
    """A short description of a field's value: arrays by shape, long containers by size."""
    if isinstance(value, np.ndarray):
        return f"array{list(value.shape)}"
    if isinstance(value, (list, tuple)) and (len(value) > 4 or len(repr(value)) > 60):
        return f"[{len(value)} items]"
    if isinstance(value, dict) and len(repr(value)) > 60:
        return f"{{{len(value)} keys}}"
    if isinstance(value, float):
        return f"{value:.4g}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"__array__": value.tolist(), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {key: _encode(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(item) for item in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and "__array__" in value:
        return np.asarray(value["__array__"], dtype=value["dtype"])
    if isinstance(value, dict):
        return {key: _decode(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode(item) for item in value]
    return value
