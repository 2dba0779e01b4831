"""A model's calibrated settings: one folder of readable files, checksummed, bound to the weights.

``workbench calibrate`` (:mod:`workbench.calibration`) measures, from nothing but the model, how its
prompts should start, which facts of the bundled knowledge base it knows, a CounterFact-style
benchmark of those facts, its statistics corpus and sample count, its edit layers and its editors'
hyper-parameters. It writes them as a folder laid out like a bundled model's record folder:

    settings.json       everything measured, with the numbers that decided each choice
    known_facts.jsonl   the facts the model answers under every template of their relation
    counterfact.json    the benchmark built from them (tuning split: case_id % 5 == 0)

``settings.json`` names the SHA-256 of the weights it was measured on (:mod:`workbench.fingerprint`)
and of the two other files, and carries a checksum of its own content; a folder whose files do not
match is refused (:class:`~workbench.errors.SettingsDamagedError`), and so are settings measured on
other weights (:class:`~workbench.errors.SettingsMismatchError`). The folder is written under a
temporary name and renamed into place, so an interrupted calibration leaves nothing half-written.

:func:`workbench.load_model` looks for settings under the weights' fingerprint in the workbench
cache (``$WORKBENCH_CACHE/settings/``), or takes an explicit folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import SettingsDamagedError, SettingsMismatchError

SETTINGS_FILE = "settings.json"
FORMAT = 1
"""Version of the settings layout; a folder of another version is refused as damaged."""


@dataclass(frozen=True)
class CalibratedSettings:
    """Settings read from a verified folder (:func:`read_settings`)."""

    directory: Path
    content: Mapping[str, Any]

    @property
    def weights_sha256(self) -> str:
        return self.content["weights_sha256"]

    @property
    def prefix(self) -> str | None:
        """The token every prompt starts with (``None``: nothing)."""
        return self.content["prompt"]["prefix"]

    @property
    def corpus(self) -> str:
        """Name of the statistics corpus (:data:`workbench.zoo.corpora.CORPORA`)."""
        return self.content["statistics"]["corpus"]

    @property
    def templates(self) -> dict[str, tuple[str, ...]]:
        """Relation id -> the templates the facts were measured with, where they replace the defaults."""
        return {rid: tuple(t) for rid, t in self.content.get("templates", {}).items()}

    @property
    def tracing_peak(self) -> int:
        """The layer whose MLP has the largest average indirect effect at the last subject token."""
        return int(self.content["layers"]["tracing"]["peak"])

    @property
    def has_own_facts(self) -> bool:
        """Whether the folder holds its own known facts and benchmark (else the calibration measured on
        those of the model's bundled record)."""
        return (self.directory / "counterfact.json").is_file()

    @property
    def editor_settings(self) -> dict[str, dict[str, Any]]:
        """Method -> hyper-parameters (``layer`` included), as :func:`workbench.edit` takes them."""
        return {method: _as_arguments(values) for method, values in self.content["editors"].items()}


def settings_directory(root: str | os.PathLike, weights_sha256: str) -> Path:
    """Where the settings of the weights with this fingerprint are kept under ``root``."""
    return Path(root) / weights_sha256[:32]


def write_settings(directory: str | os.PathLike, content: Mapping[str, Any], files: Mapping[str, str]) -> Path:
    """Write ``content`` as ``settings.json`` and ``files`` (name -> text) beside it, atomically: the
    folder appears complete under ``directory`` or not at all (an existing one is replaced)."""
    directory = Path(directory)
    staging = directory.with_name(f".{directory.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    staging.mkdir(parents=True)
    try:
        for name, text in files.items():
            (staging / name).write_text(text, encoding="utf-8")
        hashes = {name: _sha256((staging / name).read_bytes()) for name in sorted(files)}
        body = {**content, "format": FORMAT, "files": hashes}
        (staging / SETTINGS_FILE).write_text(json.dumps({**body, "checksum": _checksum(body)}, indent=1,
                                                        ensure_ascii=False) + "\n", encoding="utf-8")
        old = directory.with_name(f".{directory.name}.{uuid.uuid4().hex[:8]}.old")
        if directory.exists():
            directory.rename(old)
        staging.rename(directory)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_settings(directory: str | os.PathLike, weights_sha256: str | None = None) -> CalibratedSettings:
    """The verified settings in ``directory``.

    Raises:
        SettingsDamagedError: a file is missing, edited or truncated, or the layout is unknown.
        SettingsMismatchError: ``weights_sha256`` is given and the settings were measured on other weights.
    """
    directory = Path(directory)
    path = directory / SETTINGS_FILE
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
        body = {key: value for key, value in stored.items() if key != "checksum"}
        intact = stored.get("format") == FORMAT and stored.get("checksum") == _checksum(body) and all(
            _sha256((directory / name).read_bytes()) == digest for name, digest in body["files"].items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        intact = False
    if not intact:
        raise SettingsDamagedError(
            f"the calibrated settings in {directory} are damaged or incomplete (a checksum does not match); "
            "delete the folder and run `workbench calibrate` again")
    if weights_sha256 is not None and body["weights_sha256"] != weights_sha256:
        raise SettingsMismatchError(
            f"the settings in {directory} were calibrated on other weights (sha256 {body['weights_sha256'][:16]}..., "
            f"this model's is {weights_sha256[:16]}...); calibrate this model with `workbench calibrate`")
    return CalibratedSettings(directory, body)


def _as_arguments(values: Mapping[str, Any]) -> dict[str, Any]:
    """JSON lists back into the tuples the hyper-parameter dataclasses hold (``prefixes``)."""
    return {name: _tuples(value) for name, value in values.items()}


def _tuples(value: Any) -> Any:
    return tuple(_tuples(item) for item in value) if isinstance(value, list) else value


def _checksum(body: Mapping[str, Any]) -> str:
    return _sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8"))


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
