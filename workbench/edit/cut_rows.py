"""Rows cut at the edit position: what comes before it is computed once.

A value search (:mod:`workbench.edit.targets`) adds a vector to an activation at one position of
every row, the subject's last token, and re-runs the model at every optimisation step. In a causal
model nothing before that position depends on the vector, so the tokens before it are run once,
without gradients, and kept as attention keys and values (the Hugging Face KV cache); each step then
runs only the tokens from the edit position on, and projects onto the vocabulary only the positions
whose predictions the loss reads. The part before the cut is left-padded and the part after it
right-padded, with an attention mask and explicit position ids, so the logits equal those of the whole rows up to float rounding (tested).

Limits: the model's forward must accept ``past_key_values``, ``attention_mask``, ``position_ids`` and
a boolean ``logits_to_keep`` mask (every family in :mod:`workbench.families` does); positions before
the cut are not recomputed, so a hook there sees nothing during the steps.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from transformer_lens.model_bridge import TransformerBridge
from transformers import DynamicCache

from workbench.tokens import pad_left, pad_right_with_mask

Hook = tuple[str, object]


@dataclass(frozen=True)
class CutRows:
    """Token rows cut at one position each; build with :func:`cut_rows`.

    ``input_ids`` holds each row from its cut on, right-padded; the cut position itself is
    ``edit_index[r]`` there (0). ``past`` holds, per layer, the attention keys and values of the tokens
    before the cut (``None`` when every row is cut at position 0)."""

    past: list[tuple[torch.Tensor, torch.Tensor]] | None
    input_ids: Int[torch.Tensor, "rows width"]
    attention_mask: Int[torch.Tensor, "rows past_plus_width"]
    position_ids: Int[torch.Tensor, "rows width"]
    edit_index: Int[torch.Tensor, "rows"]
    cut: list[int]

    def index_of(self, row: int, position: int) -> int:
        """Column in ``input_ids`` of ``position`` (counted in the whole row, at or after the cut)."""
        if position < self.cut[row]:
            raise ValueError(f"position {position} of row {row} lies before its cut at {self.cut[row]}")
        return int(self.edit_index[row]) + position - self.cut[row]

    def select(self, rows: Int[torch.Tensor, "k"]) -> CutRows:
        """Only the rows ``rows`` (ascending indices), e.g. those whose search is still running."""
        return CutRows(_selected(self.past, rows), self.input_ids[rows], self.attention_mask[rows], self.position_ids[rows],
                       self.edit_index[rows], [self.cut[i] for i in rows.tolist()])

    def run(
        self, model: TransformerBridge, predict: Bool[torch.Tensor, "rows width"], fwd_hooks: Sequence[Hook] = ()
    ) -> Float[torch.Tensor, "n_predicted vocab"]:
        """Logits at the ``True`` entries of ``predict``, in row-major order, with ``fwd_hooks`` on."""
        past = DynamicCache(self.past) if self.past is not None else None
        return model.run_with_hooks(
            self.input_ids, return_type="logits", fwd_hooks=list(fwd_hooks), past_key_values=past,
            attention_mask=self.attention_mask, position_ids=self.position_ids, logits_to_keep=predict,
        )


def _selected(past: list[tuple[torch.Tensor, torch.Tensor]] | None, rows: Int[torch.Tensor, "k"]):
    """Each layer's keys and values of the rows ``rows`` only."""
    return [(keys[rows], values[rows]) for keys, values in past] if past is not None else None


@dataclass(frozen=True)
class KeptPrefixes:
    """Token rows run once and kept as each layer's attention keys and values, left-padded, to be
    continued by :meth:`continued` (a value search's rows before their edit position; SERAC's edit
    sentences before the inputs they answer). Build with :func:`keep_prefixes`."""

    past: list[tuple[Float[torch.Tensor, "rows heads width head_dim"], Float[torch.Tensor, "rows heads width head_dim"]]] | None
    """Per layer, the keys and values of every row (``None`` when every row is empty)."""
    mask: Int[torch.Tensor, "rows width"]

    def select(self, rows: Int[torch.Tensor, "k"]) -> KeptPrefixes:
        """The prefixes ``rows`` (any indices, repeats allowed), in that order, trimmed to the longest of them."""
        width = int(self.mask[rows].sum(-1).max()) if len(rows) else 0
        if width == 0:
            return KeptPrefixes(None, self.mask[rows][:, :0])
        trimmed = [(keys[..., -width:, :], values[..., -width:, :]) for keys, values in self.past]
        return KeptPrefixes(_selected(trimmed, rows), self.mask[rows][:, -width:])

    def nbytes(self) -> int:
        """Memory held by the kept keys and values."""
        return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in self.past or [])

    def continued(self, rows: Sequence[Sequence[int]]) -> CutRows:
        """Each prefix followed by ``rows[r]`` (as many rows as prefixes), the prefix being the part before the cut."""
        if len(rows) != self.mask.shape[0]:
            raise ValueError(f"{len(rows)} continuations for {self.mask.shape[0]} prefixes")
        # right-padded, so each continuation starts right after its (left-padded) prefix: no padding
        # between the two halves, whose key distances a sliding attention window would count
        after_ids, after_mask = pad_right_with_mask(rows, 0, self.mask.device)
        lengths_before = self.mask.sum(-1, keepdim=True)  # [rows, 1]
        return CutRows(
            past=self.past,
            input_ids=after_ids,
            attention_mask=torch.cat([self.mask, after_mask], dim=1),
            position_ids=lengths_before + torch.arange(after_ids.shape[1], device=self.mask.device),
            edit_index=torch.zeros(len(rows), dtype=torch.long, device=self.mask.device),
            cut=lengths_before[:, 0].tolist(),
        )


@torch.no_grad()
def keep_prefixes(model: TransformerBridge, rows: Sequence[Sequence[int]], *, max_rows: int = 256) -> KeptPrefixes:
    """Run ``rows`` (left-padded to one width, ``max_rows`` per forward pass) and keep their keys and values."""
    ids, mask = pad_left(rows, model.tokenizer.pad_token_id or 0, model.cfg.device)
    if ids.shape[1] == 0:
        return KeptPrefixes(None, mask)
    past: list[tuple[torch.Tensor, torch.Tensor]] = []  # filled chunk by chunk: no second copy at the end
    for start in range(0, len(rows), max_rows):
        chunk_ids, chunk_mask = ids[start : start + max_rows], mask[start : start + max_rows]
        _, cache = model(chunk_ids, return_type="logits_and_cache", attention_mask=chunk_mask,
                         position_ids=(chunk_mask.cumsum(-1) - 1).clamp_min(0),
                         logits_to_keep=torch.zeros_like(chunk_mask, dtype=torch.bool))
        for layer, (keys, values, *_) in enumerate(cache):
            if start == 0:
                past.append((keys.new_empty(len(rows), *keys.shape[1:]), values.new_empty(len(rows), *values.shape[1:])))
            past[layer][0][start : start + len(chunk_ids)] = keys
            past[layer][1][start : start + len(chunk_ids)] = values
    return KeptPrefixes(past, mask)


def cut_rows(model: TransformerBridge, rows: Sequence[Sequence[int]], cut: Sequence[int]) -> CutRows:
    """Cut ``rows[r]`` at ``cut[r]`` and run every row's tokens before its cut once."""
    if any(not 0 <= c < len(row) for row, c in zip(rows, cut, strict=True)):
        raise ValueError("every cut must lie inside its row")
    before = keep_prefixes(model, [row[:c] for row, c in zip(rows, cut)])
    return before.continued([row[c:] for row, c in zip(rows, cut)])
