"""Training data and cache folders for the editors with trained parts (SERAC's scope classifier, MEND's networks).

For a bundled model these parts are trained on first use and cached under
``$WORKBENCH_CACHE/<kind>/<model>/<version>/<weights fingerprint>`` (so a model whose weights change is
trained anew), with the SHA-256 of the saved tensors in the metadata (a damaged file is refused). The training records never share a subject with the
model's evaluation split (the cases benchmarks report on): the model record chooses them
(``editor_training_cases``: cases built from its knowledge base, plus city requests far from those
benchmarks use).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.edit.stats import statistics_fingerprint
from workbench.errors import InvalidRequestError

def save_component(module: nn.Module, folder: str | Path, stem: str, meta: dict) -> Path:
    """``folder/<stem>.safetensors`` (the module's state) and ``folder/<stem>.json`` (``meta`` and the
    tensors file's SHA-256), the metadata written last, so an interrupted save leaves no readable component."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = folder / f"{stem}.safetensors"
    save_file({k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}, tensors)
    meta = {**meta, "sha256": _sha256(tensors)}
    (folder / f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return folder


def read_component(folder: str | Path, stem: str, what: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(meta, state) written by :func:`save_component`; a clear error if there is none or the tensors
    file does not match the checksum saved with it."""
    folder = Path(folder)
    if not (folder / f"{stem}.json").exists():
        raise InvalidRequestError(f"no trained {what} under {folder} ({stem}.json missing)")
    meta = json.loads((folder / f"{stem}.json").read_text(encoding="utf-8"))
    tensors = folder / f"{stem}.safetensors"
    if "sha256" not in meta:
        raise InvalidRequestError(f"the trained {what} under {folder} carry no checksum (saved by a version before "
                                  "checksums were kept): train them anew")
    if not tensors.is_file() or meta["sha256"] != _sha256(tensors):
        raise InvalidRequestError(f"the trained {what} under {folder} are damaged ({tensors.name} is missing or does "
                                  "not match the checksum in its metadata): delete the folder to train anew")
    return meta, load_file(tensors)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def bundled_component(model: TransformerBridge, kind: str, version: str, *, what: str, how: str,
                      load: Callable[[Path], Any], train: Callable[[list[CounterFactRecord]], Any]) -> Any:
    """A bundled model's trained ``what``: loaded from ``$WORKBENCH_CACHE/<kind>/<model>/<version>/<fingerprint>``
    (of the unedited weights, :func:`~workbench.edit.stats.statistics_fingerprint`), or trained on
    :func:`training_records` and saved there on first use. Other models get a clear
    error saying ``how`` to train and pass one."""
    from workbench.models import cache_root, record_of

    record = record_of(model)
    if record is None:
        raise InvalidRequestError(f"{what} must be trained for this model first: {how}")
    folder = cache_root() / kind / record.name / version / statistics_fingerprint(model)[:16]
    try:
        return load(folder)
    except InvalidRequestError:
        if any(folder.glob("*.json")):
            raise  # a component is there but does not fit: do not overwrite it silently
    component = train(training_records(model))
    component.save(folder, model_name=record.name)
    return component


def training_records(model: TransformerBridge) -> list[CounterFactRecord]:
    """A bundled model's training cases for trained editors (its record's ``editor_training_cases``)."""
    from workbench.models import record_of

    return record_of(model).editor_training_cases(model.tokenizer)
