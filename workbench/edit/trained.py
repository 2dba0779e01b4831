"""Training data and cache folders for the editors with trained parts (SERAC's scope classifier, MEND's networks).

For a bundled model these parts are trained on first use and cached under
``$WORKBENCH_CACHE/<kind>/<model>/<version>``. The training records never share a subject with the
model's evaluation split (the cases benchmarks report on): they are the tuning split plus, for a
model whose record has the city -> country relation, the *last* ``CITY_CASES`` city requests of
:mod:`workbench.zoo.mass_requests` (``--data cities`` benchmarks take the first ones).
"""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.errors import InvalidRequestError

CITY_CASES = 300


def save_component(module: nn.Module, folder: str | Path, stem: str, meta: dict) -> Path:
    """``folder/<stem>.safetensors`` (the module's state) and ``folder/<stem>.json`` (``meta``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, folder / f"{stem}.safetensors")
    (folder / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def read_component(folder: str | Path, stem: str, what: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, state) written by :func:`save_component`; a clear error if there is none."""
    folder = Path(folder)
    if not (folder / f"{stem}.json").exists():
        raise InvalidRequestError(f"no trained {what} under {folder} ({stem}.json missing)")
    return json.loads((folder / f"{stem}.json").read_text(encoding="utf-8")), load_file(folder / f"{stem}.safetensors")


def bundled_component(model: TransformerBridge, kind: str, version: str, *, what: str, how: str,
                      load: Callable[[Path], Any], train: Callable[[list[CounterFactRecord]], Any]) -> Any:
    """A bundled model's trained ``what``: loaded from ``$WORKBENCH_CACHE/<kind>/<model>/<version>``,
    or trained on :func:`training_records` and saved there on first use. Other models get a clear
    error saying ``how`` to train and pass one."""
    from workbench.models import cache_root, record_of

    record = record_of(model)
    if record is None:
        raise InvalidRequestError(f"{what} must be trained for this model first: {how}")
    folder = cache_root() / kind / record.name / version
    try:
        return load(folder)
    except InvalidRequestError:
        if any(folder.glob("*.json")):
            raise  # a component is there but does not fit: do not overwrite it silently
    component = train(training_records(model))
    component.save(folder, model_name=record.name)
    return component


def training_records(model: TransformerBridge) -> list[CounterFactRecord]:
    """A bundled model's training records for trained editors (see the module docstring)."""
    from workbench.models import record_of

    record = record_of(model)
    held_out = {case.requested_rewrite.subject for case in record.benchmark(split="evaluation")}
    records = list(record.benchmark(split="tuning"))
    if "P17" in record.relations():
        from workbench.zoo.mass_requests import mass_requests

        records += mass_requests(model.tokenizer, record.name, 10**6)[-CITY_CASES:]
    return [case for case in records if case.requested_rewrite.subject not in held_out]
