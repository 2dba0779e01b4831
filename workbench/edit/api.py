"""``workbench.edit(model, requests, method=...)``: validate, pick the layer, run an editor reversibly.

This is an entry point: for a bundled model it resolves the model's record (settings per method,
edit layer, statistics corpus, known facts for tracing) and passes them on as arguments.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import CounterFactRecord, EditRequest
from workbench.edit import alphaedit, caching, finetune, kn, mend, memit, rome, serac, ultraedit
from workbench.edit.layers import N_FACTS, default_edit_layer
from workbench.edit.session import EditResult
from workbench.edit.stats import active_corpus, pinned_statistics, using_corpus
from workbench.errors import InvalidRequestError, SubjectNotInPromptError, TargetAlreadyPredictedError
from workbench.probabilities import score_targets
from workbench.models import record_of
from workbench.tokens import locate_subject

if TYPE_CHECKING:
    from workbench.models import ModelRecord


@dataclasses.dataclass(frozen=True)
class Editor:
    """One editing method: its hyper-parameters' class (whose defaults hold for every model; a
    model's own settings come from its record or calibration, see :func:`hyperparameters`), and the
    function applying it as ``apply(result, requests, layer, hparams, progress)``."""

    settings: Callable[[], Any]
    apply: Callable[..., None]
    edits_layers: bool = True
    """False for editors that keep edits outside the weights (no edit layer is looked up)."""
    traced_layer: bool = True
    """False for editors that choose their own default layers (no tracing recommendation is looked up):
    knowledge-neuron editing searches every layer, UltraEdit edits the last blocks but the final one."""
    independent_edits: Callable[..., contextlib.AbstractContextManager] | None = None
    """``(model, requests) -> context manager`` under which edits of those requests, each made alone from
    the present weights and undone (a bench's cases), share work that does not depend on the others:
    ROME searches their targets in one batch (:func:`workbench.edit.rome.searching_together`)."""


EDITORS: dict[str, Editor] = {
    "rome": Editor(rome.RomeHyperParams, rome.apply_rome, independent_edits=rome.searching_together),
    "memit": Editor(memit.MemitHyperParams, memit.apply_memit),
    "alphaedit": Editor(alphaedit.AlphaEditHyperParams, alphaedit.apply_alphaedit),
    "kn": Editor(kn.KnHyperParams, kn.apply_kn, traced_layer=False),
    "ft": Editor(finetune.FineTuneHyperParams, finetune.apply_finetune),
    "ft-l": Editor(functools.partial(finetune.FineTuneHyperParams, linf_bound=0.05), finetune.apply_finetune),
    "caching": Editor(caching.CachingHyperParams, caching.apply_caching, edits_layers=False),
    "serac": Editor(serac.SeracHyperParams, serac.apply_serac, edits_layers=False),
    "mend": Editor(mend.MendHyperParams, mend.apply_mend, edits_layers=False),
    "ultraedit": Editor(ultraedit.UltraEditHyperParams, ultraedit.apply_ultraedit, traced_layer=False),
}
"""method name -> :class:`Editor`."""

Requests = EditRequest | CounterFactRecord | Sequence[EditRequest | CounterFactRecord]


def edit(
    model: TransformerBridge,
    requests: Requests | None = None,
    method: str = "rome",
    *,
    prompt: str | None = None,
    subject: str | None = None,
    target: str | None = None,
    layer: int | Sequence[int] | None = None,
    check_targets: bool = True,
    progress: bool = False,
    **hparams,
) -> EditResult:
    """Rewrite facts in ``model``'s weights and return a reversible :class:`EditResult`.

    Args:
        requests: one or more :class:`~workbench.data.EditRequest` (or CounterFact records); or
            leave it out and give ``prompt``, ``subject`` and ``target`` as plain strings.
        prompt, subject, target: one edit written out, e.g. ``prompt="The Eiffel Tower is located
            in", subject="Eiffel Tower", target="Rome"`` (the subject must occur in the prompt).
        method: ``"rome"`` (Meng et al. 2022), ``"memit"`` (Meng et al. 2023), ``"alphaedit"`` (MEMIT
            projected onto the corpus keys' null space, Fang et al. 2025), ``"kn"`` (Dai et
            al. 2022), ``"ft"`` or ``"ft-l"`` (fine-tuning baselines, Zhu et al. 2020), ``"caching"``
            (edits kept in a memory that answers matching prompts; no weight changes,
            :mod:`workbench.edit.caching`), ``"serac"`` (a memory, a scope classifier and the base
            model prompted with the edit, Mitchell et al. 2022; :mod:`workbench.edit.serac`),
            ``"mend"`` (trained networks turn the fine-tuning gradient into a weight edit of the last
            blocks, Mitchell et al. 2022; :mod:`workbench.edit.mend`), ``"ultraedit"`` (lifelong editing
            in closed form from normalised gradients, no corpus statistics, Gu et al. 2025;
            :mod:`workbench.edit.ultraedit`).
        layer: the layer to edit; ``None`` takes a bundled model's tuned layer for the method, else
            the layer recommended by causal tracing on its known facts
            (:func:`workbench.edit.layers.default_edit_layer`). MEMIT, AlphaEdit and UltraEdit also take a
            list of layers; UltraEdit's default is its own (the last blocks but the final one, see
            :mod:`workbench.edit.ultraedit`); knowledge-neuron editing reads it as "only neurons of this
            layer" (``None``: all).
        check_targets: refuse requests whose ``target_new`` the model already predicts.
        hparams: overrides of the method's hyper-parameters (:class:`~workbench.edit.rome.RomeHyperParams`,
            :class:`~workbench.edit.memit.MemitHyperParams`,
            :class:`~workbench.edit.alphaedit.AlphaEditHyperParams`, :class:`~workbench.edit.kn.KnHyperParams`,
            :class:`~workbench.edit.finetune.FineTuneHyperParams`); a bundled model's tuned
            settings are the defaults.

    Use as ``with workbench.edit(model, request) as result: ...`` to undo the edit on exit, or
    call ``result.restore()``. Bad input raises before any weight changes; an editor that fails
    part-way restores the weights before the error propagates.

    Example::

        with workbench.edit(model, prompt="The Eiffel Tower is located in", subject="Eiffel Tower",
                            target="Rome") as result:
            print(workbench.top_predictions(model, "The Eiffel Tower is in the city of"))
    """
    requests = _requests_or_strings(requests, prompt, subject, target)
    settings = hyperparameters(model, method, **hparams)
    editor = EDITORS[method]
    record = record_of(model)
    if layer is None and editor.edits_layers and record is not None:
        layer = record.editor_settings.get(method, {}).get("layer")
    batch = _as_requests(requests)
    validate_requests(model, batch, check_targets=check_targets)
    # one weights fingerprint per call: the statistics, the edit layer and the context prefixes
    # are all looked up under the weights the edit starts from
    with _record_corpus(record), pinned_statistics(model):
        if layer is None and editor.edits_layers and editor.traced_layer and record is not None:
            layer = default_edit_layer(model, record.known_facts(N_FACTS))
        result = EditResult(model, method, batch)
        try:
            editor.apply(result, batch, layer, settings, progress)
        except BaseException:
            result.restore()
            raise
    result.info["hparams"] = dataclasses.asdict(settings)
    return result


def hyperparameters(model: TransformerBridge, method: str, **hparams) -> Any:
    """The hyper-parameters :func:`edit` runs ``method`` with on ``model``, the one lookup every entry
    point uses: the method's defaults, overridden by the model's settings (its calibration, or a
    bundled record's shipped calibration; :func:`workbench.models.record_of`), overridden by
    ``hparams`` (the edit layer, an argument of :func:`edit`, is not among them). Results store them, so that a measurement
    says which settings it was made with even after a record's settings change.

    Raises:
        InvalidRequestError: an unknown method or hyper-parameter name, or a value the method's
            settings refuse.
    """
    if method not in EDITORS:
        raise InvalidRequestError(f"unknown method {method!r}; choose one of {sorted(EDITORS)}")
    if EDITORS[method].edits_layers:
        families.family_of(model)  # refuses an unsupported family before anything runs
    defaults = EDITORS[method].settings()
    known = {f.name for f in dataclasses.fields(defaults)}
    unknown = set(hparams) - known
    if unknown:
        raise InvalidRequestError(f"unknown {method} hyper-parameters {sorted(unknown)}; valid: {sorted(known)}")
    record = record_of(model)
    tuned = {name: value for name, value in (record.editor_settings.get(method, {}) if record else {}).items()
             if name != "layer"}
    return dataclasses.replace(defaults, **{**tuned, **hparams})


def _record_corpus(record: ModelRecord | None):
    """The bundled model's default statistics corpus, unless the caller chose one with ``using_corpus``."""
    if active_corpus() is not None or record is None:
        return contextlib.nullcontext()
    return using_corpus(record.corpus_texts(), record.corpus)


def request_from_prompt(prompt: str, subject: str, target_new: str, target_true: str | None = None) -> EditRequest:
    """An :class:`EditRequest` from a written-out prompt, cutting the subject's first occurrence out
    as the template slot, e.g. ("The capital of France is", "France", "Rome")."""
    if not subject or subject not in prompt:
        raise SubjectNotInPromptError(f"subject {subject!r} does not occur in prompt {prompt!r}")
    template = prompt.replace(subject, "{}", 1)
    return EditRequest(template, subject, target_new, target_true)


def _requests_or_strings(requests: Requests | None, prompt: str | None, subject: str | None,
                         target: str | None) -> Requests:
    """``requests``, or the one request written out as ``prompt``/``subject``/``target`` (not both)."""
    written = {"prompt": prompt, "subject": subject, "target": target}
    given = [name for name, value in written.items() if value is not None]
    if requests is not None:
        if given:
            raise InvalidRequestError(f"give either requests or prompt/subject/target, not both (got {', '.join(given)})")
        return requests
    if len(given) < 3:
        missing = sorted(set(written) - set(given))
        raise InvalidRequestError(f"an edit from strings needs prompt, subject and target; missing {', '.join(missing)}")
    return request_from_prompt(prompt, subject, target)


def _as_requests(requests: Requests) -> list[EditRequest]:
    items = [requests] if isinstance(requests, (EditRequest, CounterFactRecord)) else list(requests)
    if not items:
        raise InvalidRequestError("no edit requests given")
    batch = [item.requested_rewrite if isinstance(item, CounterFactRecord) else item for item in items]
    for item in batch:
        if not isinstance(item, EditRequest):
            raise InvalidRequestError(f"expected EditRequest or CounterFactRecord, got {type(item).__name__}")
    return batch


def validate_requests(model: TransformerBridge, requests: list[EditRequest], *, check_targets: bool = True) -> None:
    """Refuse requests no editor can carry out: subject missing from the prompt, an empty target,
    one fact given two different new objects, and (if ``check_targets``) a target the model already
    predicts (every target token top-1)."""
    wanted: dict[tuple[str, str], str] = {}
    for request in requests:
        locate_subject(model, request.filled_prompt(), request.subject)
        fact = (request.subject, request.relation_id or request.prompt)
        if wanted.setdefault(fact, request.target_new) != request.target_new:
            raise InvalidRequestError(
                f"conflicting targets for {request.subject!r} ({fact[1]}): {wanted[fact]!r} and "
                f"{request.target_new!r}; a batch can rewrite a fact only once"
            )
    if not check_targets:
        return
    scores = score_targets(model, [r.filled_prompt() for r in requests], [r.target_new for r in requests])
    for request, already in zip(requests, scores.tokens_correct.tolist()):
        if already:
            raise TargetAlreadyPredictedError(
                f"the model already completes {request.filled_prompt()!r} with {request.target_new!r}; "
                "choose a different target_new"
            )
