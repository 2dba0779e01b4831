"""MEMIT: Mass-Editing Memory in a Transformer (Meng et al. 2023, "Mass-Editing Memory in a
Transformer", sections 4.3-4.4, Algorithm 1).

Write many facts at once into the MLP output projections of a range of layers R = {l_1 < ... < l_L}:

Steps 1 and 2 are shared with AlphaEdit (:mod:`workbench.edit.spread`); this module holds MEMIT's
layer update.

1. **Targets** z_i = h_i + delta_i: for each request, the residual stream after the last layer of R
   at the subject's last token, moved by a delta found exactly as ROME's v* (NLL of
   ``target_new`` over prefixed prompts, KL on "{subject} is a", norm bound), here for all requests
   in one batched search (:mod:`workbench.edit.targets`).
2. **Spread** over the layers in ascending order: at layer l, with the keys K (the mean MLP key
   of each request, one column each, recomputed with the earlier layers already updated) and the
   residual still missing at the last layer, R = (z - h_current) / (layers left) (mapped back
   through the post-MLP norm where the family has one, :mod:`workbench.edit.norms`), solve in float64

       Delta_l = R K^T (lambda C_l + K K^T)^-1,

   the least-squares change that maps the new keys to the residual while keeping every key of the
   corpus (second moment C_l) where it was, weighted by lambda (the papers' ``mom2_update_weight``:
   how many corpus keys one unit of C counts for against the new ones).

Limits: the edit works only where the model reads facts from the subject's last token in the
edited layers (check with causal tracing, :func:`workbench.locate.effects.trace_many`); C is estimated on the
statistics corpus (a bundled model's default, named in its record, or the user's) and, as in the reference,
from the unedited model even when edits accumulate.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float

from workbench.data import EditRequest
from workbench.edit.session import EditResult
from workbench.edit.spread import MassEditHyperParams, mass_edit_layers, spread_targets
from workbench.edit.stats import second_moments, solve_or_explain


@dataclass(frozen=True)
class MemitHyperParams(MassEditHyperParams):
    """MEMIT's settings.

    Attributes:
        mom2_update_weight: lambda, the weight of the corpus keys' second moment against the edits
            (the paper's GPT-J value, 15,000, by default).
    """

    mom2_update_weight: float = 15000.0


def spread_update(
    keys: Float[torch.Tensor, "n d_in"],
    residuals: Float[torch.Tensor, "n d_out"],
    moment: Float[torch.Tensor, "d_in d_in"],
    weight: float,
) -> Float[torch.Tensor, "d_out d_in"]:
    """Delta = R K^T (weight * C + K K^T)^-1 in float64 (columns of K and R are the requests)."""
    keys, residuals = keys.double(), residuals.double()
    system = weight * moment.double() + keys.T @ keys  # [d_in, d_in]
    solved = solve_or_explain(system, keys.T)  # [d_in, n] = (weight C + K K^T)^-1 K
    return residuals.T @ solved.T


def apply_memit(
    result: EditResult, requests: list[EditRequest], layer: int | Sequence[int] | None, hparams: MemitHyperParams,
    progress: bool = False,
) -> None:
    """Write all ``requests`` at once into the MLP output projections of the MEMIT layers."""
    layers = mass_edit_layers(result.model, layer, hparams.span)
    moments = second_moments(result.model, layers, n_samples=hparams.mom2_n_samples, progress=progress)

    def update(l: int, keys: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
        return spread_update(keys, residuals, moments[l], hparams.mom2_update_weight)

    spread_targets(result, requests, layers, hparams, update, progress=progress)

