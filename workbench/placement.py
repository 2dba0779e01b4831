"""Reading and writing weights that accelerate has offloaded (``load_model(device_map=...)``).

A model loaded with a device map keeps each block where the map puts it. Blocks on a device (a
GPU, or the CPU) hold ordinary parameters. Blocks *offloaded* (``"disk"``, or ``"cpu"`` under a GPU
map) hold empty ``meta`` parameters: accelerate's hook on each module copies the values in from its
weights map (CPU memory, or files under ``offload_folder``) for the module's forward pass and drops
them after. Reading such a weight therefore means reading the weights map, and writing one (an
edit, its restore) means writing there: written values are kept in CPU memory, in front of the file
copy, which stays as it was. Limits: gradient-based training of an offloaded weight (the
fine-tuning baselines) is not possible; values written to a disk-offloaded weight cost CPU memory.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn


def _weights_map(module: nn.Module) -> Mapping | None:
    """The map accelerate reads ``module``'s offloaded weights from, or ``None`` if they are on a device."""
    hook = getattr(module, "_hf_hook", None)
    if getattr(hook, "offload", False):
        return getattr(hook, "weights_map", None)
    return None


def is_offloaded(module: nn.Module, attribute: str) -> bool:
    """Whether ``module.attribute`` is an offloaded weight (its parameter holds no values)."""
    return _weights_map(module) is not None and getattr(module, attribute).device.type == "meta"


def read(module: nn.Module, attribute: str) -> torch.Tensor:
    """The values of ``module.attribute``: the tensor itself on a device, else its offloaded copy
    (for a disk-offloaded weight, a copy read from disk or the values last written)."""
    if is_offloaded(module, attribute):
        return _weights_map(module)[attribute]
    return getattr(module, attribute)


@torch.no_grad()
def write(module: nn.Module, attribute: str, values: torch.Tensor) -> None:
    """Set ``module.attribute`` to ``values`` in place (on a device) or in its weights map (offloaded)."""
    if not is_offloaded(module, attribute):
        getattr(module, attribute).copy_(values)
        return
    weights = _weights_map(module)
    store, key = getattr(weights, "dataset", weights), getattr(weights, "prefix", "") + attribute
    in_memory = getattr(store, "state_dict", None)  # accelerate's loader reads these before the files
    if isinstance(in_memory, dict):
        in_memory[key] = values.detach().to("cpu", copy=True)
    else:
        store[key].copy_(values)


@torch.no_grad()
def add(module: nn.Module, attribute: str, increment: torch.Tensor) -> None:
    """Add ``increment`` to ``module.attribute``: in place on a device (no full-size temporary), through
    :func:`read` and :func:`write` where offloaded."""
    if is_offloaded(module, attribute):
        write(module, attribute, read(module, attribute) + increment)
    else:
        getattr(module, attribute).add_(increment)
