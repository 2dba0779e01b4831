"""Does an input name an edit's subject? The check that keeps SERAC's memory from answering neighbours.

A CounterFact edit is about one subject ((s, r, o) -> (s, r, o*)); its neighbours share the relation
and name other subjects. SERAC's bi-encoder (:mod:`workbench.edit.scope`) scores an input against
every edit from one embedding of each, which mostly encodes the relation: with 1,000 edits in memory
it routed 64% of smollm2-135m's held-out neighbours to some edit of their relation. This check is a
late interaction, token against edit (as in ColBERT, Khattab & Zaharia 2020): an edit is keyed by the
residual stream entering an early block at its subject's last token (where Meng et al. 2022, ROME,
find the subject's representation assembled), an input by the same residual at each of its tokens,
both standardised per dimension; an input names the subject when one of its tokens' keys has
cosine at least ``threshold`` with the edit's key.

The block and the threshold are fit on training records (:func:`fit_subject_match`): each record's
prompt and paraphrases must match its own edit, its neighbours must not; the block and threshold
that separate them best (Youden's J: matched in-scope share minus matched neighbour share) win.

Limits: the input must name the subject in words the model represents alike at that block. An alias
("the Big Apple" for New York) or a pronoun does not match, so such an input stays with the base
model; two subjects whose last tokens read alike early in the model (a shared surname) do match.
"""
from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import nn
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import CounterFactRecord
from workbench.errors import InvalidRequestError
from workbench.tokens import length_batches, locate_subject, pad_right


class SubjectMatch(nn.Module):
    """Keys of tokens at block ``layer`` and the least cosine at which an input names an edit's subject."""

    def __init__(self, d_model: int, layer: int, threshold: float) -> None:
        super().__init__()
        self.layer, self.threshold = layer, threshold
        self.register_buffer("mean", torch.zeros(d_model))
        self.register_buffer("std", torch.ones(d_model))
        self.info: dict = {}
        """How the block and threshold were fit (:func:`fit_subject_match`)."""

    def keys(self, hidden: Float[torch.Tensor, "n d_model"]) -> Float[torch.Tensor, "n d_model"]:
        """Standardised, unit-length keys of residual-stream rows entering block :attr:`layer`."""
        return nn.functional.normalize((hidden.float() - self.mean) / self.std, dim=-1)

    def edit_keys(self, model: TransformerBridge, prompts: Sequence[str],
                  subjects: Sequence[str]) -> Float[torch.Tensor, "edits d_model"]:
        """The key of each edit: its prompt's residual at the subject's last token."""
        return self.keys(subject_residuals(model, prompts, subjects, [self.layer])[self.layer])

    def running_match(self, hidden: Float[torch.Tensor, "tokens d_model"], tokens: Sequence[int], special: set[int],
                      edit_keys: Float[torch.Tensor, "edits d_model"]) -> Float[torch.Tensor, "tokens edits"]:
        """For every prefix of one input (its residual ``hidden`` at :attr:`layer`) and every edit:
        the best cosine of any of the prefix's tokens, ``special`` tokens left out, to the edit's key."""
        scores = self.keys(hidden) @ edit_keys.to(hidden.device).T  # [tokens, edits]
        counted = torch.tensor([t not in special for t in tokens], device=scores.device)
        return scores.masked_fill(~counted[:, None], -1.0).cummax(dim=0).values


def subject_residuals(model: TransformerBridge, prompts: Sequence[str], subjects: Sequence[str],
                      layers: Sequence[int]) -> dict[int, Float[torch.Tensor, "n d_model"]]:
    """The residual stream entering each block of ``layers`` at the last token of each prompt's subject."""
    spans = [locate_subject(model, prompt, subject) for prompt, subject in zip(prompts, subjects)]
    hidden = token_residuals(model, [span.input_ids[0].tolist() for span in spans], layers)
    return {layer: torch.stack([h[layer][span.last] for h, span in zip(hidden, spans)]) for layer in layers}


@torch.no_grad()
def fit_subject_match(model: TransformerBridge, records: Sequence[CounterFactRecord], *,
                      layers: Sequence[int] | None = None, max_records: int = 300, seed: int = 0,
                      progress: bool = True) -> SubjectMatch:
    """The block (of ``layers``, default 1 to the middle of the model) and threshold that best separate
    ``records``' prompts and paraphrases (matched against their own edit) from their neighbours, on
    up to ``max_records`` of them; the fit (J, shares) is kept in ``.info``."""
    if len(records) < 2:
        raise InvalidRequestError("fitting the subject match needs at least two records")
    layers = list(layers or range(1, model.cfg.n_layers // 2 + 1))
    for layer in layers:
        families.check_layer(model, layer)
    sample = random.Random(seed).sample(list(records), min(max_records, len(records)))
    if not any(r.neighborhood_prompts for r in sample):
        raise InvalidRequestError("fitting the subject match needs records with neighbourhood prompts")
    edits = subject_residuals(model, [r.requested_rewrite.filled_prompt() for r in sample],
                              [r.requested_rewrite.subject for r in sample], layers)
    inputs = [(owner, in_scope, prompt) for owner, r in enumerate(sample)
              for in_scope, prompts in ((True, [r.requested_rewrite.filled_prompt(), *r.paraphrase_prompts]),
                                        (False, r.neighborhood_prompts))
              for prompt in prompts]
    rows = [model.tokenizer(prompt)["input_ids"] for _, _, prompt in inputs]
    special = set(model.tokenizer.all_special_ids)
    real = [torch.tensor([t not in special for t in row]) for row in rows]
    hidden_rows = [{layer: h[layer][keep] for layer in layers}
                   for h, keep in zip(token_residuals(model, rows, layers, progress=progress), real)]
    candidates = []
    for layer in layers:
        every_token = torch.cat([h[layer] for h in hidden_rows])
        match = SubjectMatch(model.cfg.d_model, layer, 0.0)
        match.mean.copy_(every_token.mean(0))
        match.std.copy_(every_token.std(0).clamp_min(1e-6))
        own = match.keys(edits[layer])
        best = torch.tensor([(match.keys(h[layer]) @ own[owner]).max().item()
                             for h, (owner, _, _) in zip(hidden_rows, inputs)])
        in_scope = torch.tensor([s for _, s, _ in inputs])
        threshold, j, shares = _best_threshold(best[in_scope], best[~in_scope])
        match.threshold = threshold
        match.info = {"layer": layer, "threshold": threshold, "youden_j": j, **shares, "records": len(sample)}
        candidates.append(match)
    return max(candidates, key=lambda m: (m.info["youden_j"], -m.layer))


@torch.no_grad()
def token_residuals(model: TransformerBridge, rows: Sequence[Sequence[int]], layers: Sequence[int], *,
                    batch_size: int = 64, progress: bool = False) -> list[dict[int, Float[torch.Tensor, "tokens d_model"]]]:
    """Per row of token ids, per block of ``layers``: the residual stream entering it at every token
    (float32, on the CPU), from passes that stop at the last of ``layers``."""
    found: list[dict[int, torch.Tensor]] = [{} for _ in rows]
    batches = length_batches([len(row) for row in rows], batch_size)
    for chunk in tqdm(batches, desc="residuals", disable=not progress, unit="batch"):
        ids = pad_right([list(rows[i]) for i in chunk], model.tokenizer.pad_token_id or 0, model.cfg.device)
        hidden = families.residuals_entering(model, ids, layers)
        for k, i in enumerate(chunk):
            found[i] = {layer: hidden[layer][k, : len(rows[i])].float().cpu() for layer in layers}
    return found


def _best_threshold(matched: torch.Tensor, unmatched: torch.Tensor) -> tuple[float, float, dict]:
    """The threshold (midway between two observed scores) maximising the share of ``matched`` at or
    above it minus the share of ``unmatched`` at or above it."""
    scores = torch.cat([matched, unmatched]).unique().sort().values
    cuts = torch.cat([scores[:1] - 1e-3, (scores[1:] + scores[:-1]) / 2, scores[-1:] + 1e-3])
    kept_in = (matched[None, :] >= cuts[:, None]).float().mean(1)
    kept_out = (unmatched[None, :] >= cuts[:, None]).float().mean(1)
    best = int((kept_in - kept_out).argmax())
    return (float(cuts[best]), float(kept_in[best] - kept_out[best]),
            {"in_scope_matched": 100 * float(kept_in[best]), "neighbours_matched": 100 * float(kept_out[best])})
