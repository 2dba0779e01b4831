"""AlphaEdit: MEMIT with every update projected onto the null space of the preserved keys
(Fang et al. 2025, "AlphaEdit: Null-Space Constrained Knowledge Editing for Language Models",
ICLR 2025, section 3).

MEMIT trades the new facts against the corpus keys with a weight lambda; edits applied batch after
batch add up until the model's other knowledge collapses. AlphaEdit removes the trade-off:

1. **Projection** P = U_0 U_0^T per edited layer, U_0 the eigenvectors of the corpus keys' second
   moment C = E[k k^T] whose eigenvalue is below ``null_space_threshold``: the directions the
   preserved keys K_0 (almost) never use, so that Delta P K_0 ~ 0.
2. **Targets and residuals** exactly as MEMIT's (:func:`workbench.edit.spread.spread_targets`).
3. **Update** per layer (the paper's closed form)

       Delta = R K_1^T P (K_p K_p^T P + K_1 K_1^T P + alpha I)^-1,

   the minimiser of ||Delta P K_1 - R||^2 + ||Delta P K_p||^2 + alpha ||Delta P||^2, applied as
   Delta (which satisfies Delta = Delta P). K_1 are this batch's keys, K_p the keys of earlier
   AlphaEdit edits still applied to the model (kept per model, forgotten when their edit is
   restored), R the residual share of the layer.

Limits: C is the unedited model's (pinned, as in MEMIT). Delta P K_0 vanishes only where C has
(near-)zero eigenvalues; the paper's threshold 2e-2 was set for GPT-J and Llama3, whose key second
moments have many. smollm2-135m's is full rank (at layer 4 the smallest eigenvalue is 0.004, the
mean 0.018, and 1,203 of 1,536 lie below 2e-2), so there P removes the keys' dominant directions
but does not make the corpus keys' outputs exactly invariant. Keys of edits replayed with
:func:`workbench.edit.load_edit` or written by other methods are not tracked as preserved.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import EditRequest
from workbench.edit.contexts import mean_keys
from workbench.edit.session import EditResult
from workbench.edit.spread import MassEditHyperParams, mass_edit_layers, spread_targets
from workbench.edit.stats import second_moments, solve_or_explain
from workbench.state import state_of


@dataclass(frozen=True)
class AlphaEditHyperParams(MassEditHyperParams):
    """AlphaEdit's settings: MEMIT's search and layer settings plus the projection's.

    Attributes:
        null_space_threshold: eigenvalues of C (the mean k k^T) below this span the null space
            (the paper's 2e-2 for every model).
        l2: alpha, the weight of ||Delta P||^2 (the paper's 10 for GPT-J and Llama3).
    """

    null_space_threshold: float = 2e-2
    l2: float = 10.0



def null_space_projection(
    moment: Float[torch.Tensor, "d_in d_in"], threshold: float
) -> Float[torch.Tensor, "d_in d_in"]:
    """P = U_0 U_0^T (float64), U_0 the eigenvectors of the symmetric ``moment`` with eigenvalue
    below ``threshold``; all zeros if there are none."""
    eigenvalues, eigenvectors = torch.linalg.eigh(moment.double())
    null = eigenvectors[:, eigenvalues < threshold]  # [d_in, null dims]
    return null @ null.T


def projected_update(
    keys: Float[torch.Tensor, "n d_in"],
    residuals: Float[torch.Tensor, "n d_out"],
    projection: Float[torch.Tensor, "d_in d_in"],
    preserved: Float[torch.Tensor, "m d_in"],
    l2: float,
) -> Float[torch.Tensor, "d_out d_in"]:
    """Delta = R K^T P (K_p K_p^T P + K K^T P + l2 I)^-1 in float64 (rows of ``keys``, ``residuals``
    and ``preserved`` are vectors), solved as the symmetric positive definite system
    (P M P + l2 I) Delta^T = P K R^T with M = K K^T + K_p K_p^T, which has the same solution
    because that solution lies in the range of P."""
    keys, residuals, projection, preserved = keys.double(), residuals.double(), projection.double(), preserved.double()
    moment = keys.T @ keys + preserved.T @ preserved  # [d_in, d_in]
    system = projection @ moment @ projection + l2 * torch.eye(len(projection), dtype=torch.float64,
                                                                device=projection.device)
    solved = solve_or_explain(system, projection @ keys.T @ residuals)  # [d_in, d_out]
    return solved.T


def edited_keys(model: TransformerBridge, layer: int) -> Float[torch.Tensor, "m d_mlp"]:
    """The keys written into ``layer`` by AlphaEdit edits still applied to ``model`` (K_p), in the
    order they were applied; ``[0, d_mlp]`` if none. Kept in the model's state
    (:attr:`workbench.state.ModelState.edited_keys`: result id -> layer -> ``[n, d_mlp]`` float64)."""
    written = [keys[layer] for keys in state_of(model).edited_keys.values() if layer in keys]
    if not written:
        return torch.zeros(0, model.cfg.d_mlp, dtype=torch.float64, device=model.cfg.device)
    return torch.cat(written)


def forget_edited_keys(model: TransformerBridge) -> None:
    """Forget every preserved key of ``model``: for code that puts the weights back without
    restoring each edit (the scaling runner restores a copy of all parameters)."""
    state_of(model).edited_keys.clear()


def _remember_keys(result: EditResult, keys: dict[int, torch.Tensor]) -> None:
    """Keep ``keys`` as preserved for later edits of ``result.model`` until ``result`` is restored."""
    applied = state_of(result.model).edited_keys
    applied[id(result)] = keys
    result.on_restore(lambda: applied.pop(id(result), None))


def apply_alphaedit(
    result: EditResult, requests: list[EditRequest], layer: int | Sequence[int] | None,
    hparams: AlphaEditHyperParams, progress: bool = False,
) -> None:
    """Write all ``requests`` at once into the MLP output projections of the layers, each update
    projected onto the null space of the corpus keys and preserving earlier AlphaEdit edits."""
    model = result.model
    layers = mass_edit_layers(model, layer, hparams.span)
    moments = second_moments(model, layers, n_samples=hparams.mom2_n_samples, progress=progress)
    projections = {l: null_space_projection(moments[l], hparams.null_space_threshold) for l in layers}
    preserved = {l: edited_keys(model, l) for l in layers}

    def update(l: int, keys: torch.Tensor, residuals: torch.Tensor) -> torch.Tensor:
        return projected_update(keys, residuals, projections[l], preserved[l], hparams.l2)

    templates = spread_targets(result, requests, layers, hparams, update, progress=progress)
    _remember_keys(result, {l: mean_keys(model, l, requests, templates).double() for l in layers})
    result.info.update({
        "null_space_dims": {l: round(float(projections[l].trace())) for l in layers},
        "preserved_keys": len(preserved[layers[0]]),
    })
