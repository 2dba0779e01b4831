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

Independent edits of the same weights (a bench's cases, each edited alone and undone) can search
their v* together: inside :func:`searching_together` the first ROME edit of one of them runs one
batched search for all (:func:`workbench.edit.targets.optimise_value_deltas`; the requests'
searches do not interact, so each finds what it finds alone, up to float rounding), and each edit
of the same weights then takes its own result. An edit made on changed weights (the second request
of a sequential call) searches anew.

Limits: one fact per update (several requests are applied one after another, which degrades
after many edits; use MEMIT for batches); quality depends on how well C is estimated; the
reference's prefixes are 5- and 10-token samples from the model, as here.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float

from workbench import families
from workbench.data import EditRequest
from workbench.edit.contexts import sample_prefixes
from workbench.edit.layers import edit_layer, refuse_last_layer
from workbench.edit.scoped import ScopedMemory
from workbench.edit.session import EditResult
from workbench.edit.stats import second_moment, solve_or_explain
from workbench.edit.targets import TargetHyperParams, ValueSearch, optimise_value_deltas


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
        found = _target(model, request, layer, templates, hparams.value_search())
        update = rank_one_update(projection.matrix().detach(), found.key, found.delta, moment)  # [d_out, d_in]
        result.apply_delta(projection.name, projection.to_stored(update))
        details.append({"subject": request.subject, "v_steps": found.steps, "final_nll": found.final_nll,
                        "delta_norm": found.delta.norm().item()})
    result.info.update({"layer": layer, "requests": details, "prefixes": templates})


@dataclass(frozen=True)
class _Target:
    """What ROME's search found for one request."""

    key: Float[torch.Tensor, "d_mlp"]
    """k*: the mean key over the contexts."""
    delta: Float[torch.Tensor, "d_model"]
    steps: int
    final_nll: float


def _search(model, requests: Sequence[EditRequest], layer: int, templates: Sequence[str],
            search: ValueSearch) -> list[_Target]:
    found = optimise_value_deltas(model, families.Hooks.mlp_value(layer), requests, templates, search,
                                  read_hook=families.Hooks.mlp_key(layer))
    return [_Target(found.read[i], found.deltas[i], found.steps[i], found.final_nll[i]) for i in range(len(requests))]


@dataclass
class _SearchedTogether:
    """The requests of :func:`searching_together` and what was found for them on the weights the block
    began with, per (layer, contexts, search settings)."""

    requests: list[EditRequest]
    found: dict[tuple, dict[EditRequest, _Target]] = field(default_factory=dict)


_TOGETHER: ScopedMemory[_SearchedTogether] = ScopedMemory("rome_searched_together", pinned_weights=True)


@contextlib.contextmanager
def searching_together(model, requests: Sequence[EditRequest]) -> Iterator[None]:
    """Inside, ROME edits of ``requests`` made from ``model``'s present weights take v* from one batched
    search of all of them, run at the first such edit (per layer and settings); see the module docstring."""
    with _TOGETHER.holding(model, _SearchedTogether(list(dict.fromkeys(requests)))):
        yield


def _target(model, request: EditRequest, layer: int, templates: Sequence[str], search: ValueSearch) -> _Target:
    together = _TOGETHER.of(model)
    if together is None or request not in together.requests:
        return _search(model, [request], layer, templates, search)[0]
    setting = (layer, tuple(templates), search)
    if setting not in together.found:
        together.found[setting] = dict(zip(together.requests, _search(model, together.requests, layer, templates, search)))
    return together.found[setting][request]
