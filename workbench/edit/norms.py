"""A wanted change of the residual stream, mapped back through a post-MLP norm.

MEMIT (Meng et al. 2023, section 4.4) spreads the residual change each edited layer must add over
the MLP output projections, assuming that what the projection writes is what the residual stream
receives. That holds for GPT-2, GPT-J, NeoX and Llama. Gemma 2 and 3 normalise the MLP output
before adding it (``post_feedforward_layernorm``, an RMSNorm), so the projection must write the
*pre-norm* vector whose normalised image is the wanted one.

:func:`pre_norm_change` finds it numerically, for any norm module: minimise
``|| norm(x') - (norm(x) + r) ||^2`` over x' by L-BFGS in float64, starting from the current
MLP output x. An RMSNorm's image is a scaled sphere, so a wanted vector off that sphere is reached
as closely as the sphere allows (its radial part is lost); the solution is the nearest reachable.

Limits: the map is solved at the subject's last token of each request's own prompt (as MEMIT reads
its residuals); in other contexts the norm's scale differs and the realised change with it, which
the next layer's re-measured residual and a second pass (``passes=2``) absorb.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import EditRequest
from workbench.edit.contexts import values_at_subject

STEPS = 50
"""L-BFGS iterations (each at most 20 evaluations); the residual converges in far fewer."""


def pre_norm_change(
    model: TransformerBridge, layer: int, requests: Sequence[EditRequest],
    residual_change: Float[torch.Tensor, "n d_model"],
) -> Float[torch.Tensor, "n d_model"]:
    """The change of the MLP output projection's output at ``layer`` (subject's last token of each
    request) that changes the residual stream by ``residual_change``; ``residual_change`` itself
    where the family adds the MLP output unnormalised."""
    path = families.family_of(model).mlp_out_norm
    if path is None:
        return residual_change
    norm = families.hf_module(model, path.format(families.check_layer(model, layer)))
    current = values_at_subject(model, families.Hooks.mlp_value(layer), requests)  # [n, d_model], float64
    return invert_norm(norm, current, residual_change.double()) - current


def invert_norm(
    norm: torch.nn.Module, current: Float[torch.Tensor, "n d"], wanted_change: Float[torch.Tensor, "n d"]
) -> Float[torch.Tensor, "n d"]:
    """x' with ``norm(x')`` as close as it can be to ``norm(current) + wanted_change`` (float64)."""
    parameters = {name: p.detach().double() for name, p in norm.named_parameters()}
    buffers = {name: b.detach() for name, b in norm.named_buffers()}

    def apply(x: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(norm, {**parameters, **buffers}, (x,))

    with torch.no_grad():
        wanted = apply(current) + wanted_change
    solution = current.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([solution], max_iter=20, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                                  tolerance_change=1e-14)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = (apply(solution) - wanted).pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        for _ in range(STEPS):
            optimiser.step(closure)
    return solution.detach()
