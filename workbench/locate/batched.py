"""Many patched forward passes of one prompt, batched.

Causal tracing and activation patching both run a prompt many times, each time overwriting a
few activations with values from another run. :class:`PatchRunner` packs those runs into as
few forward passes as a memory budget allows, one row per (cell, noise sample).

A patch at token t cannot change positions before t (the model is causal), and a patch inside
block l cannot change what enters the blocks below l, so every patched run equals the unpatched
one before its first patched token and below its first patched block. The runner runs the
unpatched prompt once per noise sample, keeping its keys and values and the residual stream
entering every block, and starts each patched run there: positions t onwards only, each run from
the block where its patches begin. Runs that begin at the same token share a forward pass in
which every block runs only the rows started at or below it (``families.run_from_block`` with one
start block per row), so batches stay full while no block runs a row it cannot change.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge
from transformers.cache_utils import DynamicCache

from workbench import families
from workbench.precision import check_compute_dtype, computing_in
from workbench.tokens import SubjectSpan

DEFAULT_MEMORY_BUDGET = 512 * 2**20


Readout = Callable[[Float[torch.Tensor, "batch d_vocab"]], Float[torch.Tensor, "batch"]]
"""Turns the last position's logits into one number per row (e.g. p(answer))."""


def answer_probability(answer_id: int) -> Readout:
    """Readout of p(answer) at the last position."""
    return lambda logits: logits.float().softmax(-1)[:, answer_id]


@dataclass(frozen=True)
class NoiseCorruption:
    """Noise added to the subject's token embeddings, one draw per sample."""

    span: SubjectSpan
    noise: Float[torch.Tensor, "samples subject d_model"]

    @classmethod
    def draw(cls, model: TransformerBridge, span: SubjectSpan, samples: int, scale: float, seed: int) -> NoiseCorruption:
        generator = torch.Generator().manual_seed(seed)
        shape = (samples, span.end - span.start, model.cfg.d_model)
        noise = torch.randn(shape, generator=generator) * scale
        return cls(span, noise.to(model.cfg.device))

    @property
    def samples(self) -> int:
        return self.noise.shape[0]

    def hook(self, copies: int):
        """An embedding hook adding the noise to ``copies`` x ``samples`` rows (cell-major order)."""
        noise = self.noise.repeat(copies, 1, 1)

        def add_noise(embeddings: Float[torch.Tensor, "batch pos d_model"], hook=None):
            embeddings[:, self.span.start : self.span.end] += noise.to(embeddings.dtype)
            return embeddings

        return add_noise

    def embeddings(self, model: TransformerBridge, input_ids: Int[torch.Tensor, "1 pos"]) -> Float[torch.Tensor, "samples pos d_model"]:
        """Token embeddings of ``input_ids`` (a prefix of the prompt) with the noise added."""
        embedded = families.embedding(model)(input_ids).expand(self.samples, -1, -1).clone()
        end = min(self.span.end, input_ids.shape[1])
        if end > self.span.start:
            embedded[:, self.span.start : end] += self.noise[:, : end - self.span.start].to(embedded.dtype)
        return embedded


@dataclass(frozen=True)
class Patch:
    """Set the activation at ``hook`` and ``token`` to its value in the ``source`` run.

    ``"clean"`` values are one vector per token; ``"corrupted"`` values (and any source with a
    leading samples axis) are taken from the noise sample of the row being patched.
    """

    hook: str
    token: int
    source: str

    @property
    def layer(self) -> int:
        """The block the hook belongs to (hooks are ``blocks.{layer}.*``)."""
        parts = self.hook.split(".")
        if len(parts) < 3 or parts[0] != "blocks" or not parts[1].isdigit():
            raise ValueError(f"patches must be at a block's hook (blocks.<layer>.*), got {self.hook!r}")
        return int(parts[1])


class PatchRunner:
    """Runs many patched copies of one prompt per forward pass and reads one number per copy.

    Each *cell* is a list of :class:`Patch` applied together; every cell is run once per noise
    sample of the corruption (or once, without corruption) and its probabilities averaged.
    Cells are packed into batches of at most ``memory_budget`` bytes of activations. ``dtype``
    ``"bfloat16"`` runs the unpatched and the patched passes' matrix products in bfloat16
    (:mod:`workbench.precision`); patched-in values and readouts stay float32.
    """

    def __init__(
        self,
        model: TransformerBridge,
        input_ids: Int[torch.Tensor, "1 pos"],
        readout: Readout,
        sources: dict[tuple[str, str], torch.Tensor],
        corruption: NoiseCorruption | None = None,
        memory_budget: int = DEFAULT_MEMORY_BUDGET,
        dtype: str = "float32",
    ) -> None:
        self.model, self.input_ids, self.readout = model, input_ids, readout
        self.dtype = check_compute_dtype(dtype)
        self.sources, self.corruption = sources, corruption
        self.samples = corruption.samples if corruption else 1
        self.memory_budget = memory_budget
        self._unpatched: tuple[DynamicCache, dict[int, torch.Tensor], torch.Tensor] | None = None

    def cells_per_batch(self, start: int) -> int:
        """How many cells fit the memory budget when positions ``start`` onwards are run."""
        cfg = self.model.cfg
        pos, total = self.input_ids.shape[1] - start, self.input_ids.shape[1]
        activations = pos * cfg.n_layers * (6 * cfg.d_model + 2 * cfg.d_mlp + 2 * cfg.n_heads * total) + cfg.d_vocab
        prefix_cache = 2 * start * cfg.n_layers * cfg.d_model  # keys and values copied to every row
        per_row = self.input_ids.new_empty((), dtype=cfg.dtype).element_size() * (activations + prefix_cache)
        return max(1, self.memory_budget // (per_row * self.samples))

    @torch.no_grad()
    def run(self, cells: Sequence[Sequence[Patch]], progress: bool = False) -> Float[torch.Tensor, "cells"]:
        """The readout for each cell, averaged over noise samples."""
        last = self.input_ids.shape[1] - 1
        n_layers = families.n_layers(self.model)
        by_token: dict[int, list[tuple[int, int]]] = {}  # first patched token: [(first patched block, cell)]
        for index, patches in enumerate(cells):
            token = min((p.token for p in patches), default=last)
            block = min((p.layer for p in patches), default=n_layers - 1)
            by_token.setdefault(token, []).append((block, index))
        chunks = []
        for token, started in sorted(by_token.items()):
            started.sort()  # rows in ascending start block, as a staggered pass wants them
            size = self.cells_per_batch(token)
            chunks += [(token, started[i : i + size]) for i in range(0, len(started), size)]
        results = torch.empty(len(cells))
        with computing_in(self.dtype, self.input_ids.device):  # one context: weights are cast once
            for token, started in tqdm(chunks, desc="patching", disable=not progress, unit="batch"):
                indices = [index for _, index in started]
                results[indices] = self._run_chunk([cells[i] for i in indices], token, [block for block, _ in started])
        return results

    @torch.no_grad()
    def unpatched(self) -> float:
        """The readout of the unpatched (corrupted) run, averaged over noise samples."""
        return float(self._unpatched_run()[2].mean())

    def _unpatched_run(self) -> tuple[DynamicCache, dict[int, torch.Tensor], torch.Tensor]:
        """Keys and values of the unpatched (corrupted) prompt, the residual stream entering each
        block (``{layer: [samples, pos, d_model]}``) and the readout, one row per noise sample;
        computed once."""
        if self._unpatched is None:
            if self.corruption is None:
                embedded = families.embedding(self.model)(self.input_ids)
            else:
                embedded = self.corruption.embeddings(self.model, self.input_ids)
            recording = families.recording_block_inputs(self.model)
            with recording as block_inputs, computing_in(self.dtype, self.input_ids.device):
                run = self.model.original_model(inputs_embeds=embedded, use_cache=True, logits_to_keep=1)
            self._unpatched = (run.past_key_values, dict(block_inputs), self.readout(run.logits[:, -1]).cpu())
        return self._unpatched

    def _prefix(self, start: int) -> DynamicCache:
        """Keys and values of positions ``0 .. start - 1`` of the unpatched run."""
        cache = copy.deepcopy(self._unpatched_run()[0])
        cache.crop(start - self.input_ids.shape[1])  # a negative count: how many positions to drop
        return cache

    def _run_chunk(self, cells: Sequence[Sequence[Patch]], start: int, blocks: Sequence[int]) -> Float[torch.Tensor, "cells"]:
        """Runs ``cells`` from token ``start``, cell ``i`` from block ``blocks[i]`` (ascending)."""
        samples = self.samples
        by_hook: dict[str, list[tuple[int, Patch]]] = {}
        for index, patches in enumerate(cells):
            for patch in patches:
                by_hook.setdefault(patch.hook, []).append((index, patch))
        hooks = [(name, self._setter(entries, samples, start)) for name, entries in by_hook.items()]
        entering = self._unpatched_run()[1]  # {block: [samples, pos, d_model]}
        # row = cell * samples + sample, each entering its cell's first patched block
        hidden = torch.cat([entering[block][:, start:] for block in blocks])
        row_blocks = [block for block in blocks for _ in range(samples)]
        extra = {"use_cache": False}
        if start > 0:
            cache = self._prefix(start)
            cache.batch_select_indices(torch.arange(samples, device=hidden.device).repeat(len(cells)))
            extra = {"past_key_values": cache}
        # logits at the last position only: the unembedding of every position is a large share
        # of a small model's forward pass
        with self.model.hooks(fwd_hooks=hooks):
            logits = families.run_from_block(self.model, row_blocks, hidden, logits_to_keep=1, **extra).logits
        values = self.readout(logits[:, -1])
        return values.view(len(cells), samples).mean(1).cpu()

    def _setter(self, entries: list[tuple[int, Patch]], samples: int, start: int):
        device = self.input_ids.device
        sample_index = torch.arange(samples, device=device)
        rows = torch.cat([index * samples + sample_index for index, _ in entries])
        tokens = torch.tensor([p.token - start for _, p in entries for _ in range(samples)], device=device)
        values = torch.cat([self._values(patch, sample_index) for _, patch in entries])

        def set_values(activation: Float[torch.Tensor, "batch pos d"], hook=None):
            activation[rows, tokens] = values.to(activation.dtype)
            return activation

        return set_values

    def _values(self, patch: Patch, sample_index: torch.Tensor) -> Float[torch.Tensor, "samples d"]:
        source = self.sources[(patch.source, patch.hook)]
        if source.dim() == 2:  # one value per token, shared by every sample
            return source[patch.token].expand(len(sample_index), -1)
        return source[sample_index, patch.token]
