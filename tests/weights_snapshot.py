"""Helpers for the editing tests: snapshots of every Hugging Face parameter and what changed."""
from __future__ import annotations

import torch

from workbench.models import hf_state_dict


def snapshot(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in hf_state_dict(model).items()}


def changed(model, before) -> set[str]:
    return {name for name, tensor in hf_state_dict(model).items() if not torch.equal(tensor, before[name])}
