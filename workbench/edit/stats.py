"""Second-moment statistics of MLP keys, C = E[k k^T], streamed over a corpus and cached.

ROME and MEMIT (Meng et al. 2022, 2023) spread an edit in the directions the layer's keys rarely
use: their closed-form updates solve a least-squares problem weighted by C, the uncentred
covariance of the inputs k of the MLP output projection over a large text sample.

C is accumulated in float64 over every token position of the texts. Results are cached on disk,
keyed by a fingerprint of the model's weights, the layer, the corpus and the sample count; the
cache file carries a SHA-256 of its tensor, so a corrupted or truncated file is detected and
recomputed, never used.

The corpus is an argument: ``texts``, or the innermost :func:`using_corpus` block. The entry
points (``workbench.edit``, the CLI) open such a block with a bundled model's default corpus
(its record names it); any other model needs one passed in. The corpus's name is part of the
cache key and of the cache file's name.

Limits: the reference implementation samples 100,000 Wikipedia texts; the quality of an edit
depends on how much the corpus resembles the model's training text.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import torch
from jaxtyping import Float
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.capture import run_until
from workbench.errors import InvalidRequestError
from workbench.fingerprint import state_fingerprint
from workbench.models import cache_root, hf_state_dict
from workbench.state import state_of
from workbench.tokens import length_batches, pad_right

DEFAULT_CACHE = cache_root() / "stats"

_CORPUS: ContextVar[tuple[str, tuple[str, ...]] | None] = ContextVar("workbench_statistics_corpus", default=None)
"""(name, texts) of the innermost :func:`using_corpus` block of this thread or task, else ``None``."""


def statistics_fingerprint(model: TransformerBridge) -> str:
    """The fingerprint statistics of ``model`` are cached under: the pinned one inside
    :func:`pinned_statistics`, else that of the current weights."""
    return state_of(model).pinned_fingerprint or weights_fingerprint(model)


@contextmanager
def using_corpus(texts: Iterable[str], name: str = "custom") -> Iterator[None]:
    """Inside the block, statistics requested without a corpus (as the editors request them) are
    computed over ``texts``, cached under ``name`` (letters, digits, ``-``). Use it to edit any model
    with your own text: ``with using_corpus(my_texts, "my-wiki"): workbench.edit(model, request, layer=5)``."""
    if not re.fullmatch(r"[A-Za-z0-9-]+", name):
        raise InvalidRequestError(f"corpus name {name!r}: use letters, digits and '-' only (it names cache files)")
    token = _CORPUS.set((name, tuple(texts)))
    try:
        yield
    finally:
        _CORPUS.reset(token)


@contextmanager
def pinned_statistics(model: TransformerBridge) -> Iterator[str]:
    """Serve the statistics of ``model``'s current weights while edits pile up inside the block.

    Editors applied one after another without restoring change the weights, and with them the
    cache key; the reference implementations keep using the statistics of the unedited model,
    which is what this does. Statistics not yet computed when the pin was taken are computed on
    first use if the weights are still unchanged, and refused otherwise (caching them under the
    pinned key would mislabel them). Yields the pinned fingerprint.
    """
    state = state_of(model)
    outer = state.pinned_fingerprint is not None
    fingerprint = state.pinned_fingerprint = state.pinned_fingerprint or weights_fingerprint(model)
    try:
        yield fingerprint
    finally:
        if not outer:
            state.pinned_fingerprint = None


def active_corpus() -> tuple[str, list[str]] | None:
    """(name, texts) of the innermost :func:`using_corpus` block, or ``None`` outside any."""
    corpus = _CORPUS.get()
    return None if corpus is None else (corpus[0], list(corpus[1]))


def weights_fingerprint(model: TransformerBridge) -> str:
    """SHA-256 over the model's Hugging Face parameters and buffers (:mod:`workbench.fingerprint`)."""
    return state_fingerprint(model.original_model, hf_state_dict(model))


def _corpus_fingerprint(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()

@torch.no_grad()
def accumulate_second_moments(
    model: TransformerBridge,
    layers: Sequence[int],
    texts: Iterable[str],
    *,
    batch_size: int = 64,
    progress: bool = True,
    total: int | None = None,
) -> tuple[dict[int, Float[torch.Tensor, "d_mlp d_mlp"]], int]:
    """Sum of k k^T over every token of ``texts`` at each of ``layers``' MLP keys (one forward pass
    per batch for all of them, stopped after the highest), and the token count. Texts are batched
    by token length (:func:`workbench.tokens.length_batches`; the sum does not depend on the order).

    Texts are tokenized like prompts (BOS first); longer texts are cut at the context length.
    """
    layers = sorted({families.check_layer(model, layer) for layer in layers})
    if not layers:
        raise InvalidRequestError("no layers to accumulate statistics for")
    hooks = {families.Hooks.mlp_key(layer): layer for layer in layers}
    widths = {layer: families.mlp_out_projection(model, layer).d_in for layer in layers}
    sums = {layer: torch.zeros(width, width, dtype=torch.float64, device=model.cfg.device) for layer, width in widths.items()}
    count = 0
    tokenizer, pad = model.tokenizer, model.tokenizer.pad_token_id
    names = ", ".join(map(str, layers))
    bar = tqdm(total=total, desc=f"second moment, layer{'s' if len(layers) > 1 else ''} {names}", unit="text",
               disable=not progress)

    def flush(batch: list[list[int]]) -> int:
        input_ids = pad_right(batch, pad, model.cfg.device)
        lengths = torch.tensor([len(ids) for ids in batch], device=model.cfg.device)
        mask = torch.arange(input_ids.shape[1], device=model.cfg.device) < lengths[:, None]  # [batch, pos]

        def accumulate(layer: int):
            def add(activation: torch.Tensor) -> None:
                k = activation[mask].float()  # [tokens, d_mlp]
                sums[layer].add_((k.T @ k).double())  # a batch's sum in float32, the total in float64

            return add

        # the layers above the highest are not needed: the pass stops there
        run_until(model, input_ids, {name: accumulate(layer) for name, layer in hooks.items()})
        bar.update(len(batch))
        return int(mask.sum())

    encoded = [tokenizer(text, truncation=True, max_length=model.cfg.n_ctx)["input_ids"] for text in texts]
    for rows in length_batches([len(ids) for ids in encoded], batch_size):
        count += flush([encoded[i] for i in rows])
    bar.close()
    if count == 0:
        raise InvalidRequestError("the corpus is empty: second moments need at least one text")
    return sums, count


def accumulate_second_moment(
    model: TransformerBridge, layer: int, texts: Iterable[str], **options
) -> tuple[Float[torch.Tensor, "d_mlp d_mlp"], int]:
    """:func:`accumulate_second_moments` for one layer."""
    sums, count = accumulate_second_moments(model, [layer], texts, **options)
    return sums[layer], count


def second_moments(
    model: TransformerBridge,
    layers: Sequence[int],
    texts: Sequence[str] | None = None,
    *,
    corpus_name: str = "custom",
    n_samples: int | None = None,
    cache_dir: str | Path | None = DEFAULT_CACHE,
    progress: bool = True,
) -> dict[int, Float[torch.Tensor, "d_mlp d_mlp"]]:
    """C = E[k k^T] (float64) of each of ``layers``' MLP keys over ``texts``; the layers not cached
    yet are computed together in one pass over the corpus.

    Args:
        texts: the corpus; its first ``n_samples`` texts are used (all if ``None``). Default: the
            corpus of the innermost :func:`using_corpus` block (and its name).
        corpus_name: the name ``texts`` are cached under.
        cache_dir: where to cache the results (``None`` disables caching). The default is
            ``$WORKBENCH_CACHE/stats`` or ``~/.cache/workbench/stats``.
    """
    if texts is None:
        if _CORPUS.get() is None:
            raise InvalidRequestError(
                "no statistics corpus: ROME and MEMIT need texts like the model's training data for C = E[k k^T]. "
                "Edit through workbench.edit (a bundled model brings its corpus), or wrap the call in "
                "workbench.edit.stats.using_corpus(texts, name) (CLI: --corpus FILE)"
            )
        corpus_name, texts = _CORPUS.get()
    texts = list(texts)
    if n_samples is not None:
        texts = texts[:n_samples]
    layers = sorted(set(layers))
    if cache_dir is None:
        sums, count = accumulate_second_moments(model, layers, texts, progress=progress, total=len(texts))
        return {layer: total / count for layer, total in sums.items()}
    fingerprint = statistics_fingerprint(model)
    paths = _cache_paths(fingerprint, layers, corpus_name, texts, cache_dir)
    moments = {layer: _read_cache(path) for layer, path in paths.items()}
    missing = [layer for layer, moment in moments.items() if moment is None]
    if missing and fingerprint != weights_fingerprint(model):
        raise InvalidRequestError(
            f"the statistics of layers {missing} were pinned before the model was edited but not computed then; "
            "compute them (workbench.edit.stats.second_moments) before editing, or leave the pinned block"
        )
    if missing:
        sums, count = accumulate_second_moments(model, missing, texts, progress=progress, total=len(texts))
        for layer, total in sums.items():
            moments[layer] = total / count
            _write_cache(paths[layer], moments[layer], {"layer": str(layer), "tokens": str(count),
                                                        "texts": str(len(texts)), "corpus": corpus_name})
    return {layer: moment.to(model.cfg.device) for layer, moment in moments.items()}


def growing_second_moments(
    model: TransformerBridge, layers: Sequence[int], texts: Sequence[str], sizes: Sequence[int], *,
    corpus_name: str, cache_dir: str | Path | None = DEFAULT_CACHE, progress: bool = True,
) -> Iterator[tuple[int, dict[int, Float[torch.Tensor, "d_mlp d_mlp"]]]]:
    """C over the first n texts for each n of ``sizes`` (ascending), yielded as each is ready and
    computed by adding the texts beyond the previous size only: the estimates a sample-size
    choice compares cost as much as the largest one. Each is cached as :func:`second_moments`
    caches ``texts[:n]``, so the chosen one is read back for free."""
    sums: dict[int, torch.Tensor] = {}
    count, start = 0, 0
    for size in sorted(sizes):
        if size > start:
            part, added = accumulate_second_moments(model, layers, texts[start:size], progress=progress,
                                                    total=len(texts[start:size]))
            sums = {layer: sums[layer] + total if sums else total for layer, total in part.items()}
            count, start = count + added, size
        moments = {layer: total / count for layer, total in sums.items()}
        if cache_dir is not None:
            paths = _cache_paths(statistics_fingerprint(model), layers, corpus_name, texts[:size], cache_dir)
            for layer, moment in moments.items():
                _write_cache(paths[layer], moment, {"layer": str(layer), "tokens": str(count), "texts": str(size),
                                                    "corpus": corpus_name})
        yield size, moments


def _cache_paths(fingerprint: str, layers: Sequence[int], corpus_name: str, texts: Sequence[str],
                 cache_dir: str | Path) -> dict[int, Path]:
    """Where the statistics of each layer over ``texts`` are cached for the weights ``fingerprint``."""
    corpus_key = _corpus_fingerprint(texts)
    paths = {}
    for layer in layers:
        key = hashlib.sha256(json.dumps([fingerprint, layer, corpus_name, corpus_key, len(texts)]).encode()).hexdigest()[:32]
        paths[layer] = Path(cache_dir) / f"second_moment_{corpus_name}_layer{layer}_{key}.safetensors"
    return paths


def second_moment(model: TransformerBridge, layer: int, texts: Sequence[str] | None = None, **options
                  ) -> Float[torch.Tensor, "d_mlp d_mlp"]:
    """:func:`second_moments` for one layer."""
    return second_moments(model, [layer], texts, **options)[layer]

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


def solve_or_explain(matrix: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Solve ``matrix @ x = right`` for a symmetric positive definite ``matrix`` (Cholesky), with a
    matrix that is not positive definite explained: the second moment C is singular when the corpus
    has fewer key vectors than the layer has MLP neurons, or keys that never vary."""
    factor, info = torch.linalg.cholesky_ex(matrix)
    if info.item() != 0:
        raise InvalidRequestError(
            f"the second moment of the MLP keys is singular ({matrix.shape[0]} x {matrix.shape[0]}): the corpus is "
            "too small or too repetitive; pass more text with workbench.edit.stats.using_corpus(texts)"
        )
    column = right.dim() == 1
    solved = torch.cholesky_solve(right[:, None] if column else right, factor)
    return solved[:, 0] if column else solved
