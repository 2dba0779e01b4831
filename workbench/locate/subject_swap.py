"""Subject-swap patching: does the subject's last token carry what the model knows about the subject?

ROME and MEMIT (Meng et al. 2022, 2023) write a new value at the subject's last token, on the
premise that the model reads the subject's attributes from there. This check tests the premise
directly, in the manner of activation patching between prompts (Vig et al. 2020; Geva et al. 2023,
"Dissecting Recall of Factual Associations", who patch subject representations across prompts):
for a rewrite "S r -> o_new", take a *donor* subject S' whose true object under r is o_new, run
"S' r", and copy its residual stream at one site into the run of "S r":

* at the subject's last token (the donor's last subject token into S's), or
* at the prompt's last token,

one layer at a time. The share of cases whose top prediction becomes o_new's first token is
reported per layer and site. Where the subject's last token carries the attribute, patching it
there flips the answer in the early and middle layers (the layers ROME edits); where the model
looks the fact up at the last token instead, only the last-token patch flips it, and ROME's edits
cannot take. Patching the last token after the last block reproduces the donor's own output, so
that point is 1 by construction.

Limits: donors are found among the records themselves (another record whose true object under
the same relation is this record's new target), so records without such a donor are skipped, and
donors the model does not know (its top prediction for "S' r" is not o_new) are skipped too.
Positions are aligned by role, so subjects of different token lengths can be swapped; everything
else in the two prompts must match (the same template).
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import CounterFactRecord
from workbench.errors import InvalidRequestError
from workbench.families import Hooks
from workbench.results import JsonResult
from workbench.tokens import locate_subject, target_ids

SITES = ("subject_last", "last")


@dataclass(repr=False)
class SubjectSwapResult(JsonResult):
    """Share of cases whose answer becomes the donor's, per residual-stream layer and site."""

    layers: list[int]
    """Residual stream entering block ``l`` for ``l < n_layers``; ``n_layers`` is after the last block."""
    subject_last: np.ndarray
    """``[layer]`` share flipped by patching the subject's last token."""
    last: np.ndarray
    """``[layer]`` share flipped by patching the prompt's last token."""
    n_cases: int
    """Cases measured (with a donor the model knows)."""
    skipped: int
    """Records without a donor, or whose donor the model does not know."""


def donor_subjects(records: Sequence[CounterFactRecord]) -> list[str | None]:
    """For each record, another record's subject whose ``target_true`` under the same relation and
    template is this record's ``target_new`` (the first in record order), or ``None``."""
    holders: dict[tuple[str, str, str], list[str]] = defaultdict(list)
    for record in records:
        request = record.requested_rewrite
        if request.target_true is not None:
            holders[(request.prompt, request.relation_id or "", request.target_true)].append(request.subject)
    donors = []
    for record in records:
        request = record.requested_rewrite
        candidates = holders.get((request.prompt, request.relation_id or "", request.target_new), [])
        donors.append(next((s for s in candidates if s != request.subject), None))
    return donors


def subject_swap(
    model: TransformerBridge, records: Sequence[CounterFactRecord], *, progress: bool = True
) -> SubjectSwapResult:
    """Patch a donor's residual stream at the subject's last token, and at the last token, layer by
    layer, into each record's rewrite prompt; see the module docstring.

    Raises:
        InvalidRequestError: no record has a donor the model knows.
    """
    n_layers = families.n_layers(model)
    sites = [Hooks.resid_pre(layer) for layer in range(n_layers)] + [Hooks.resid_post(n_layers - 1)]
    flips: np.ndarray = np.zeros((len(SITES), len(sites)))  # [site, layer]
    measured = 0
    pairs = list(zip(records, donor_subjects(records)))
    for record, donor in tqdm(pairs, desc="subject swap", disable=not progress, unit="case"):
        if donor is None:
            continue
        flipped = _swap_case(model, record, donor, sites)
        if flipped is not None:
            flips += flipped
            measured += 1
    if measured == 0:
        raise InvalidRequestError(
            "no record has a donor the model knows: a donor is another record of the same prompt whose "
            "target_true is this record's target_new, and the model must predict it"
        )
    shares = flips / measured
    return SubjectSwapResult(
        layers=list(range(n_layers + 1)), subject_last=shares[0], last=shares[1], n_cases=measured,
        skipped=len(records) - measured,
    )


def _swap_case(
    model: TransformerBridge, record: CounterFactRecord, donor: str, sites: list[str]
) -> np.ndarray | None:
    """``[site kind, layer]`` 1 where the patched run predicts the new target's first token; ``None``
    when the model's own answer for the donor is something else."""
    request = record.requested_rewrite
    own = locate_subject(model, request.prompt.format(request.subject), request.subject)
    theirs = locate_subject(model, request.prompt.format(donor), donor)
    new_first = target_ids(model, request.target_new)[0]
    with torch.no_grad():
        donor_logits, cache = model.run_with_cache(theirs.input_ids, names_filter=lambda name: name in sites)
        if int(donor_logits[0, -1].argmax()) != new_first:
            return None
        n_sites = len(sites)
        hooks = []
        for index, site in enumerate(sites):
            def patch(activation, hook=None, index=index, site=site):
                # [rows, pos, d_model]: row `index` patches the subject's last token, row
                # `n_sites + index` the last token, both at this site.
                activation = activation.clone()
                activation[index, own.last] = cache[site][0, theirs.last]
                activation[n_sites + index, -1] = cache[site][0, -1]
                return activation

            hooks.append((site, patch))
        logits = model.run_with_hooks(own.input_ids.expand(2 * n_sites, -1), return_type="logits", fwd_hooks=hooks)
    predictions = logits[:, -1].argmax(-1).reshape(len(SITES), n_sites)
    return (predictions == new_first).float().cpu().numpy()
