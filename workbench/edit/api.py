"""``workbench.edit(model, requests, method=...)``: validate, pick the layer, run an editor reversibly."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import CounterFactRecord, EditRequest
from workbench.edit.layers import default_edit_layer
from workbench.edit.rome import RomeHyperParams, apply_rome, hyperparameters_for
from workbench.edit.session import EditResult
from workbench.errors import InvalidRequestError, SubjectNotInPromptError, TargetAlreadyPredictedError
from workbench.evaluate.probabilities import score_targets
from workbench.tokens import locate_subject

EDITORS = {"rome": (RomeHyperParams, hyperparameters_for, apply_rome)}
"""method -> (hyper-parameter class, family defaults, editor)."""

Requests = EditRequest | CounterFactRecord | Sequence[EditRequest | CounterFactRecord]


def edit(
    model: TransformerBridge,
    requests: Requests,
    method: str = "rome",
    *,
    layer: int | None = None,
    progress: bool = False,
    **hparams,
) -> EditResult:
    """Rewrite facts in ``model``'s weights and return a reversible :class:`EditResult`.

    Args:
        requests: one or more :class:`~workbench.data.EditRequest` (or CounterFact records).
        method: ``"rome"`` (Meng et al. 2022).
        layer: the layer to edit; ``None`` takes the layer recommended by causal tracing
            (:func:`workbench.edit.layers.default_edit_layer`).
        hparams: overrides of the method's hyper-parameters (see :class:`RomeHyperParams`).

    Use as ``with workbench.edit(model, request) as result: ...`` to undo the edit on exit, or
    call ``result.restore()``. Bad input raises before any weight changes; an editor that fails
    part-way restores the weights before the error propagates.
    """
    if method not in EDITORS:
        raise InvalidRequestError(f"unknown method {method!r}; choose one of {sorted(EDITORS)}")
    hparam_class, defaults_for, editor = EDITORS[method]
    known = {f.name for f in dataclasses.fields(hparam_class)}
    unknown = set(hparams) - known
    if unknown:
        raise InvalidRequestError(f"unknown {method} hyper-parameters {sorted(unknown)}; valid: {sorted(known)}")
    settings = dataclasses.replace(defaults_for(model), **hparams)
    batch = _as_requests(requests)
    validate_requests(model, batch)
    layer = default_edit_layer(model) if layer is None else families.check_layer(model, layer)
    result = EditResult(model, method, batch)
    try:
        editor(result, batch, layer, settings, progress)
    except BaseException:
        result.restore()
        raise
    return result


def request_from_prompt(prompt: str, subject: str, target_new: str, target_true: str | None = None) -> EditRequest:
    """An :class:`EditRequest` from a written-out prompt, cutting the subject's first occurrence out
    as the template slot, e.g. ("The capital of France is", "France", "Rome")."""
    if not subject or subject not in prompt:
        raise SubjectNotInPromptError(f"subject {subject!r} does not occur in prompt {prompt!r}")
    template = prompt.replace(subject, "{}", 1)
    return EditRequest(template, subject, target_new, target_true)


def _as_requests(requests: Requests) -> list[EditRequest]:
    items = [requests] if isinstance(requests, (EditRequest, CounterFactRecord)) else list(requests)
    if not items:
        raise InvalidRequestError("no edit requests given")
    batch = [item.requested_rewrite if isinstance(item, CounterFactRecord) else item for item in items]
    for item in batch:
        if not isinstance(item, EditRequest):
            raise InvalidRequestError(f"expected EditRequest or CounterFactRecord, got {type(item).__name__}")
    return batch


def validate_requests(model: TransformerBridge, requests: list[EditRequest]) -> None:
    """Refuse requests no editor can carry out: subject missing from the prompt, a target the model
    already predicts (every target token top-1)."""
    for request in requests:
        locate_subject(model, request.filled_prompt(), request.subject)
    scores = score_targets(model, [r.filled_prompt() for r in requests], [r.target_new for r in requests])
    for request, already in zip(requests, scores.tokens_correct.tolist()):
        if already:
            raise TargetAlreadyPredictedError(
                f"the model already completes {request.filled_prompt()!r} with {request.target_new!r}; "
                "choose a different target_new"
            )
