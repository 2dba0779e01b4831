"""Spreading many edits' targets over a range of layers: the machinery MEMIT and AlphaEdit share
(Meng et al. 2023, "Mass-Editing Memory in a Transformer", sections 4.3-4.4, Algorithm 1).

1. **Targets** z_i = h_i + delta_i: for each request, the residual stream after the last layer of
   the range at the subject's last token, moved by a delta found as ROME's v* for all requests in
   one batched search (:mod:`workbench.edit.targets`).
2. **Spread** over the layers in ascending order: at layer l, with the keys K (the mean MLP key of
   each request, recomputed with the earlier layers already updated) and the residual still
   missing at the last layer divided by the layers left (mapped back through a post-MLP norm where
   the family has one, :mod:`workbench.edit.norms`), a :data:`LayerUpdate` gives the change of the
   layer's MLP output projection. MEMIT's is a least-squares solve under the keys' second moment
   (:func:`workbench.edit.memit.spread_update`); AlphaEdit's projects it onto the null space of
   preserved keys.

Limits: as MEMIT's, the edit works only where the model reads facts from the subject's last token
in the edited layers.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from tqdm.auto import tqdm

from workbench import families
from workbench.data import EditRequest
from workbench.edit.contexts import mean_keys, sample_prefixes, values_at_subject
from workbench.edit.layers import edit_layer, refuse_last_layer
from workbench.edit.norms import pre_norm_change
from workbench.edit.session import EditResult
from workbench.edit.targets import TargetHyperParams, optimise_value_deltas
from workbench.errors import InvalidRequestError


@dataclass(frozen=True)
class MassEditHyperParams(TargetHyperParams):
    """Settings shared by the editors that spread many targets over a range of layers (MEMIT,
    AlphaEdit): ROME's search settings for the targets plus the layer range.

    Defaults follow the MEMIT paper's GPT-J values where they transfer (clamp 0.75), with one
    context prefix group of 5 tokens to keep thousands of targets affordable on a CPU.

    Attributes:
        span: number of consecutive layers edited, ending at the given (or recommended) layer.
        chunk_requests: requests whose targets are searched for in one batch (bounds memory).
        passes: rounds of search and spread. Each round after the first searches the targets again
            on the model as edited so far: a request whose target already meets the search's stop
            criterion keeps delta = 0 (its output is held where the earlier rounds put it), the
            others get the residual the earlier rounds left, and the spread runs over all
            requests again. Not in the paper; 1 (the default) is the paper's algorithm.
    """

    clamp_norm_factor: float = 0.75
    prefixes: tuple[tuple[int, int], ...] = ((5, 3),)
    span: int = 3
    chunk_requests: int = 64
    passes: int = 1

    def __post_init__(self) -> None:
        if self.passes < 1:
            raise InvalidRequestError(f"passes must be at least 1, got {self.passes}")


LayerUpdate = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]
"""(layer, keys [n, d_in], residuals [n, d_out]) -> the change of that layer's MLP output
projection, [d_out, d_in] (float64)."""


def mass_edit_layers(model, layer: int | Sequence[int] | None, span: int) -> list[int]:
    """The edited layers: ``layer`` as a list, or the ``span`` layers ending at ``layer`` (default:
    the layer recommended by causal tracing), clipped at layer 0."""
    if layer is not None and not isinstance(layer, int):
        chosen = sorted({families.check_layer(model, l) for l in layer})
        if not chosen:
            raise InvalidRequestError("a mass edit needs at least one layer")
        return chosen
    if span < 1:
        raise InvalidRequestError(f"span must be at least 1, got {span}")
    last = edit_layer(model, layer)
    return list(range(max(0, last - span + 1), last + 1))


def spread_targets(
    result: EditResult, requests: list[EditRequest], layers: list[int], hparams: MassEditHyperParams,
    update: LayerUpdate, *, progress: bool = False,
) -> list[str]:
    """Steps 1 and 2 above with the layer update ``update``: search the targets z_i at the last of
    ``layers``, then write the missing residual layer by layer in ascending order; repeat both on
    the edited model ``hparams.passes`` times in all, stopping early once every target is met.
    Returns the context templates the keys were averaged over."""
    model = result.model
    refuse_last_layer(model, layers[-1], result.method.upper())
    target_hook = families.Hooks.resid_post(layers[-1])
    templates = sample_prefixes(model, hparams.prefixes, hparams.seed)
    searches = []
    for round_ in range(hparams.passes):
        found = optimise_value_deltas(model, target_hook, requests, templates, hparams.value_search(),
                                      chunk_requests=hparams.chunk_requests, progress=progress)
        searches.append(found)
        if round_ > 0 and max(found.steps) == 1:
            break  # every target already met on the edited model
        targets = found.original.double() + found.deltas.double()  # z_i, [n, d_model]
        _spread(result, requests, layers, templates, targets, update, progress)
    projections = {l: families.mlp_out_projection(model, l).name for l in layers}
    result.info.update({
        "layers": layers,
        "prefixes": templates,
        "update_norms": {l: result.deltas[name].double().norm().item() for l, name in projections.items()},
        "target_steps": searches[0].steps,
        "target_final_nll": searches[0].final_nll,
    })
    if hparams.passes > 1:
        result.info["searched_again"] = [sum(step > 1 for step in found.steps) for found in searches[1:]]
    return templates


def _spread(
    result: EditResult, requests: list[EditRequest], layers: list[int], templates: list[str],
    targets: Float[torch.Tensor, "n d_model"], update: LayerUpdate, progress: bool,
) -> None:
    """Step 2: write ``targets - current residual`` at the last of ``layers``, layer by layer."""
    model = result.model
    target_hook = families.Hooks.resid_post(layers[-1])
    for done, l in enumerate(tqdm(layers, desc=f"{result.method} layers", disable=not progress)):
        keys = mean_keys(model, l, requests, templates)  # [n, d_mlp]
        missing = targets - values_at_subject(model, target_hook, requests)  # [n, d_model]
        change = update(l, keys, pre_norm_change(model, l, requests, missing / (len(layers) - done)))
        projection = families.mlp_out_projection(model, l)
        result.apply_delta(projection.name, projection.to_stored(change))
