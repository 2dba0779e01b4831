"""Second-moment statistics of MLP keys, C = E[k k^T], streamed over a corpus and cached.

ROME and MEMIT (Meng et al. 2022, 2023) spread an edit in the directions the layer's keys rarely
use: their closed-form updates solve a least-squares problem weighted by C, the uncentred
covariance of the inputs k of the MLP output projection over a large text sample.

C is accumulated in float64 over every token position of the texts. Results are cached on disk,
keyed by a fingerprint of the model's weights, the layer, the corpus and the sample count; the
cache file carries a SHA-256 of its tensor, so a corrupted or truncated file is detected and
recomputed, never used.

Limits: the reference implementation samples 100,000 Wikipedia texts; offline, the workbench
defaults to the bundled model's own training sentences, and any other model needs a corpus
passed in (an iterable of strings).
"""
from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.errors import InvalidRequestError
from workbench.models import hf_state_dict, is_bundled

DEFAULT_CACHE = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench")) / "stats"

_CORPORA: list[list[str]] = []
"""Corpora set by :func:`using_corpus`, innermost last."""

_PINNED: dict[int, str] = {}
"""id(model) -> weights fingerprint whose statistics are served while edits accumulate."""


class _KeysCaptured(Exception):
    """Raised from the capture hook to end a forward pass once the keys are in hand."""


def statistics_fingerprint(model: TransformerBridge) -> str:
    """The fingerprint statistics of ``model`` are cached under: the pinned one inside
    :func:`pinned_statistics`, else that of the current weights."""
    return _PINNED.get(id(model)) or weights_fingerprint(model)


@contextmanager
def using_corpus(texts: Iterable[str]) -> Iterator[None]:
    """Inside the block, statistics requested without a corpus (as the editors request them) are
    computed over ``texts`` instead of the bundled model's training sentences. Use it to edit any
    other model: ``with using_corpus(my_texts): workbench.edit(model, request, layer=5)``."""
    _CORPORA.append(list(texts))
    try:
        yield
    finally:
        _CORPORA.pop()


@contextmanager
def pinned_statistics(model: TransformerBridge) -> Iterator[str]:
    """Serve the statistics of ``model``'s current weights while edits pile up inside the block.

    Editors applied one after another without restoring change the weights, and with them the
    cache key; the reference implementations keep using the statistics of the unedited model,
    which is what this does. Statistics not yet computed when the pin was taken are computed on
    first use if the weights are still unchanged, and refused otherwise (caching them under the
    pinned key would mislabel them). Yields the pinned fingerprint.
    """
    fingerprint = _PINNED.get(id(model)) or weights_fingerprint(model)
    outer = id(model) in _PINNED
    _PINNED[id(model)] = fingerprint
    try:
        yield fingerprint
    finally:
        if not outer:
            del _PINNED[id(model)]

def default_corpus() -> list[str]:
    """The bundled fact model's training sentences (every fact under every template)."""
    from workbench.zoo.knowledge import load_facts
    from workbench.zoo.train import corpus_texts, with_default_templates

    return corpus_texts(with_default_templates(load_facts()))

def weights_fingerprint(model: TransformerBridge) -> str:
    """SHA-256 over the model's Hugging Face parameters (names, shapes, bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(hf_state_dict(model).items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

def _corpus_fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()

@torch.no_grad()
def accumulate_second_moment(
    model: TransformerBridge,
    layer: int,
    texts: Iterable[str],
    *,
    batch_size: int = 64,
    progress: bool = True,
    total: int | None = None,
) -> tuple[Float[torch.Tensor, "d_mlp d_mlp"], int]:
    """Sum of k k^T over every token of ``texts`` at ``layer``'s MLP keys, and the token count.

    Texts are tokenized like prompts (BOS first); longer texts are cut at the context length.
    """
    families.check_layer(model, layer)
    hook = families.Hooks.mlp_key(layer)
    d_mlp = families.mlp_out_projection(model, layer).d_in
    total_sum = torch.zeros(d_mlp, d_mlp, dtype=torch.float64, device=model.cfg.device)
    count = 0
    tokenizer, pad = model.tokenizer, model.tokenizer.pad_token_id
    batch: list[list[int]] = []
    bar = tqdm(total=total, desc=f"second moment, layer {layer}", unit="text", disable=not progress)

    def flush() -> int:
        length = max(map(len, batch))
        input_ids = torch.full((len(batch), length), pad, dtype=torch.long)
        mask = torch.zeros(len(batch), length, dtype=torch.bool)
        for row, ids in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
            mask[row, : len(ids)] = True
        keys: dict[str, torch.Tensor] = {}

        def capture(activation, hook=None):
            keys["k"] = activation
            raise _KeysCaptured  # the layers above are not needed: stop the forward pass here

        try:
            model.run_with_hooks(input_ids.to(model.cfg.device), return_type=None, fwd_hooks=[(hook, capture)])
        except _KeysCaptured:
            pass
        k = keys["k"][mask.to(model.cfg.device)].double()  # [tokens, d_mlp]
        total_sum.add_(k.T @ k)
        bar.update(len(batch))
        return k.shape[0]

    for text in texts:
        batch.append(tokenizer(text, truncation=True, max_length=model.cfg.n_ctx)["input_ids"])
        if len(batch) == batch_size:
            count += flush()
            batch = []
    if batch:
        count += flush()
    bar.close()
    if count == 0:
        raise InvalidRequestError("the corpus is empty: second moments need at least one text")
    return total_sum, count

def second_moment(
    model: TransformerBridge,
    layer: int,
    texts: Sequence[str] | None = None,
    *,
    n_samples: int | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE,
    progress: bool = True,
) -> Float[torch.Tensor, "d_mlp d_mlp"]:
    """C = E[k k^T] (float64) of ``layer``'s MLP keys over ``texts``.

    Args:
        texts: the corpus; its first ``n_samples`` texts are used (all if ``None``). Default: the
            corpus of the innermost :func:`using_corpus` block, else the bundled corpus.
        cache_dir: where to cache the result (``None`` disables caching). The default is
            ``$WORKBENCH_CACHE/stats`` or ``~/.cache/workbench/stats``.
    """
    if texts is None:
        if not _CORPORA and not is_bundled(model):
            warnings.warn("second moments of a model loaded from outside the bundled directory, over the bundled "
                          "model's training sentences; unless this model was trained on them (a factgpt copy or "
                          "retrain), give texts like its own with using_corpus(texts) (CLI: --corpus FILE)",
                          stacklevel=2)
        texts = _CORPORA[-1] if _CORPORA else default_corpus()
    texts = list(texts)
    if n_samples is not None:
        texts = texts[:n_samples]
    if cache_dir is None:
        total, count = accumulate_second_moment(model, layer, texts, progress=progress, total=len(texts))
        return total / count
    fingerprint = statistics_fingerprint(model)
    key = hashlib.sha256(json.dumps([fingerprint, layer, _corpus_fingerprint(texts), len(texts)]).encode()).hexdigest()[:32]
    path = Path(cache_dir) / f"second_moment_{key}.safetensors"
    cached = _read_cache(path)
    if cached is not None:
        return cached.to(model.cfg.device)
    if fingerprint != weights_fingerprint(model):
        raise InvalidRequestError(
            f"the statistics of layer {layer} were pinned before the model was edited but not computed then; "
            "compute them (workbench.edit.stats.second_moment) before editing, or leave the pinned block"
        )
    total, count = accumulate_second_moment(model, layer, texts, progress=progress, total=len(texts))
    moment = total / count
    _write_cache(path, moment, {"layer": str(layer), "tokens": str(count), "texts": str(len(texts))})
    return moment

def _checksum(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().view(torch.uint8).numpy().tobytes()).hexdigest()

def _write_cache(path: Path, moment: torch.Tensor, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    moment = moment.cpu().contiguous()
    temporary = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")  # unique: processes may race
    save_file({"second_moment": moment}, temporary, metadata={**metadata, "sha256": _checksum(moment)})
    temporary.replace(path)  # atomic: a crash never leaves a half-written cache under the real name


def _read_cache(path: Path) -> torch.Tensor | None:
    """The cached tensor, or ``None`` if absent or damaged (a damaged file is deleted)."""
    if not path.is_file():
        return None
    try:
        with safe_open(path, framework="pt") as handle:
            expected = handle.metadata().get("sha256")
        moment = load_file(path)["second_moment"]
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError):
        moment, expected = None, None
    if moment is None or expected != _checksum(moment):
        path.unlink(missing_ok=True)
        return None
    return moment
