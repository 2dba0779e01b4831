"""ROME: Rank-One Model Editing (Meng et al. 2022, "Locating and Editing Factual Associations
in GPT", section 3).

Treat the MLP output projection W of one layer as a linear associative memory mapping keys k
(MLP activations at the subject's last token) to values v (what it writes into the residual
stream). To make the model say ``target_new`` about a subject:

1. **Key** k*: the mean key at the subject's last token, over the prompt preceded by a few short
   random prefixes (so the key stands for the subject in many contexts).
2. **Value** v* = W k* + delta, with delta found by gradient descent on the negative
   log-likelihood of ``target_new`` (teacher forced, over the prefixed prompts), plus a KL term
   that keeps the model's distribution on "{subject} is a" close to the original (essence
   drift), plus a weight decay on delta, with ||delta|| clamped to a multiple of ||v||.
3. **Update** the closed-form minimal change that maps k* to v* while disturbing other keys
   least under their second moment C = E[k k^T]:
   W <- W + (v* - W k*) (C^-1 k*)^T / ((C^-1 k*)^T k*).

The update is computed in float64 and written through an :class:`~workbench.edit.session.EditResult`.

Limits: one fact per update (several requests are applied one after another, which degrades
after many edits; use MEMIT for batches); quality depends on how well C is estimated; the
reference's prefixes are 5- and 10-token samples from the model, as here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float

from workbench import families
from workbench.data import EditRequest
from workbench.edit.contexts import sample_prefixes
from workbench.edit.layers import edit_layer, refuse_last_layer
from workbench.edit.session import EditResult
from workbench.edit.stats import second_moment, solve_or_explain
from workbench.edit.targets import TargetHyperParams, optimise_value_deltas


@dataclass(frozen=True)
class RomeHyperParams(TargetHyperParams):
    """ROME's settings: those of its key and target (:class:`~workbench.edit.targets.TargetHyperParams`;
    the paper's GPT-2 XL values where they transfer)."""


def rank_one_update(
    weight: Float[torch.Tensor, "d_out d_in"],
    key: Float[torch.Tensor, "d_in"],
    value_delta: Float[torch.Tensor, "d_out"],
    second_moment: Float[torch.Tensor, "d_in d_in"],
) -> Float[torch.Tensor, "d_out d_in"]:
    """The change of W mapping ``key`` to ``W key + value_delta`` with least disturbance under C.

    Delta W = value_delta (C^-1 k)^T / ((C^-1 k)^T k), computed in float64; it is rank one and
    satisfies (W + Delta W) k = W k + value_delta exactly (up to rounding).
    """
    key = key.double()
    direction = solve_or_explain(second_moment.double(), key)  # C^-1 k*
    return torch.outer(value_delta.double(), direction) / direction.dot(key)


def apply_rome(
    result: EditResult, requests: list[EditRequest], layer: int | None, hparams: RomeHyperParams, progress: bool = False
) -> None:
    """Apply ROME for each request in turn at ``layer`` (default: the layer recommended by causal
    tracing), writing through ``result``."""
    from tqdm.auto import tqdm

    model = result.model
    layer = edit_layer(model, layer)
    refuse_last_layer(model, layer, "ROME")
    projection = families.mlp_out_projection(model, layer)
    moment = second_moment(model, layer, n_samples=hparams.mom2_n_samples, progress=progress)
    templates = sample_prefixes(model, hparams.prefixes, hparams.seed)
    details = []
    for request in tqdm(requests, desc="ROME", disable=not progress or len(requests) < 2):
        found = optimise_value_deltas(model, families.Hooks.mlp_value(layer), [request], templates, hparams.value_search(),
                                      read_hook=families.Hooks.mlp_key(layer))
        key, delta = found.read[0], found.deltas[0]  # k*: the mean key over the contexts
        update = rank_one_update(projection.matrix().detach(), key, delta, moment)  # [d_out, d_in]
        result.apply_delta(projection.name, projection.to_stored(update))
        details.append({"subject": request.subject, "v_steps": found.steps[0], "final_nll": found.final_nll[0],
                        "delta_norm": delta.norm().item()})
    result.info.update({"layer": layer, "requests": details, "prefixes": templates})
