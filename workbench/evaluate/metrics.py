"""CounterFact's metrics (Meng et al. 2022, "Locating and Editing Factual Associations in GPT",
section 3.2 and appendix), per case and summarised.

For a case with rewrite prompt, paraphrase prompts and neighbourhood prompts:

* Efficacy / Paraphrase Score: share of those prompts where p(target_new) > p(target_true);
  Magnitude: mean p(target_new) - p(target_true).
* Neighborhood Score: share of neighbourhood prompts (other subjects with the same true object)
  where p(target_true) > p(target_new); Magnitude: mean p(target_true) - p(target_new).
* Score: harmonic mean of the three scores (of their means over cases).

Probabilities of multi-token targets are products over their tokens, teacher forced. Beside them,
*token accuracy* (every target token is the argmax) is reported separately, because some
toolkits report it under the same names: ``edit_success`` is the token accuracy of
``target_new`` on rewrite and paraphrase prompts (Mitchell et al.'s in-scope Edit Success) and
``neighborhood_accuracy`` that of ``target_true`` on neighbourhood prompts, whose drop after an
edit is the Drawdown. Per-case values are averaged over prompts, then over cases, as in ROME.
Free-generation exact match and token F1 of the same prompts (:mod:`workbench.evaluate.generation`)
are added on request: they judge what the model says, where these judge what it scores.

Inside :func:`remembering_unedited_metrics`, a case measured on the weights the block began with is
measured once: runs that compare many edits with the same unedited model (a layer sweep, a grid of
settings) then score it once per case.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from statistics import harmonic_mean, mean

from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.edit.scoped import ScopedMemory
from workbench.errors import InvalidRequestError
from workbench.evaluate.generation import generation_metrics
from workbench.probabilities import score_targets

GROUPS = ("efficacy", "paraphrase", "neighborhood")


def case_templates(record: CounterFactRecord) -> set[str]:
    """The prompt templates of a case: its rewrite template and its paraphrases with the subject
    cut out (those containing the subject)."""
    subject = record.requested_rewrite.subject
    return {record.requested_rewrite.prompt} | {p.replace(subject, "{}", 1) for p in record.paraphrase_prompts
                                                if subject in p}


def without_edited_neighbours(
    records: Sequence[CounterFactRecord], edited_subjects: Iterable[str]
) -> tuple[list[CounterFactRecord], int]:
    """``records`` without the neighbourhood prompts about a subject in ``edited_subjects`` (written
    with one of the case's own templates), and how many prompts were dropped.

    A neighbourhood prompt stands for a fact that must not change; when several edits are written
    together or one after another, a neighbour may be a subject that is itself edited, and its
    answer then changes as asked. CounterFact draws neighbours from a pool of thousands of subjects,
    where this is rare; a benchmark of the few hundred facts a small model knows is not: 28.1% of
    the neighbourhood prompts of 200 smollm2-135m evaluation cases name a subject edited in the same
    batch. Measure batches and sequences on the remaining prompts (cases left without any have no
    neighbourhood score). Prompts written with other templates are kept.
    """
    subjects = set(edited_subjects)
    kept, dropped = [], 0
    for record in records:
        own = record.requested_rewrite.subject
        edited = {template.format(s) for template in case_templates(record) for s in subjects if s != own}
        neighbours = tuple(p for p in record.neighborhood_prompts if p not in edited)
        dropped += len(record.neighborhood_prompts) - len(neighbours)
        kept.append(replace(record, neighborhood_prompts=neighbours))
    return kept, dropped


_UNEDITED: ScopedMemory[dict[tuple[str, bool], dict[str, float]]] = ScopedMemory(
    "unedited_metrics_remembered", pinned_weights=True)
"""Each case's metrics on the weights the block began with, by the case (its ``repr``) and ``free_generation``."""


@contextlib.contextmanager
def remembering_unedited_metrics(model: TransformerBridge) -> Iterator[None]:
    """Inside, :func:`case_metrics` of ``model`` with its present weights and tokenizer measures each case
    once and returns copies of that measurement after; edited weights are measured as always. Cases
    measured together may be scored in other batches than alone, so values agree to float rounding."""
    with _UNEDITED.holding(model, {}):
        yield


def case_metrics(model: TransformerBridge, records: Sequence[CounterFactRecord],
                 free_generation: bool = False) -> list[dict[str, float]]:
    """Per-case scores, magnitudes and token accuracies, from one batched scoring of both objects;
    with ``free_generation``, also each group's exact match and token F1 of greedy generations
    (:mod:`workbench.evaluate.generation`: ``efficacy_generation_em``, ...). Remembered inside
    :func:`remembering_unedited_metrics`."""
    measured = _UNEDITED.of(model)
    if measured is None:
        return _measured(model, records, free_generation)
    keys = [(repr(record), free_generation) for record in records]
    missing = {key: record for key, record in zip(keys, records) if key not in measured}
    if missing:
        measured.update(zip(missing, _measured(model, list(missing.values()), free_generation)))
    return [dict(measured[key]) for key in keys]


def _measured(model: TransformerBridge, records: Sequence[CounterFactRecord],
              free_generation: bool) -> list[dict[str, float]]:
    """The measurement of :func:`case_metrics`."""
    rows = []  # (case index, group, prompt)
    for index, record in enumerate(records):
        if record.requested_rewrite.target_true is None:
            raise InvalidRequestError(f"case {record.case_id} has no target_true; CounterFact metrics need one")
        for group, prompts in record.prompts_by_group().items():
            rows.extend((index, group, prompt) for prompt in prompts)
    prompts = [prompt for _, _, prompt in rows]
    # one call for both objects: single-token objects of a prompt share one scored row
    targets = [records[i].requested_rewrite.target_new for i, _, _ in rows]
    targets += [records[i].requested_rewrite.target_true for i, _, _ in rows]
    both = score_targets(model, prompts + prompts, targets)
    n = len(rows)
    p_new, p_true = both.log_prob[:n].exp().tolist(), both.log_prob[n:].exp().tolist()
    new_correct, true_correct = both.tokens_correct[:n].tolist(), both.tokens_correct[n:].tolist()
    per_case: list[dict[str, list[float]]] = [{} for _ in records]
    for row, (index, group, _) in enumerate(rows):
        sign = -1 if group == "neighborhood" else 1
        margin = sign * (p_new[row] - p_true[row])
        values = per_case[index]
        values.setdefault(f"{group}_score", []).append(100.0 * (margin > 0))
        values.setdefault(f"{group}_magnitude", []).append(margin)
        correct = true_correct[row] if group == "neighborhood" else new_correct[row]
        key = "neighborhood_accuracy" if group == "neighborhood" else "edit_success"
        values.setdefault(key, []).append(100.0 * bool(correct))
    cases = [
        {"case_id": record.case_id, **{key: mean(items) for key, items in values.items()}}
        for record, values in zip(records, per_case)
    ]
    if free_generation:
        for case, generated in zip(cases, generation_metrics(model, records)):
            case.update({key: value for key, value in generated.items() if key != "case_id"})
    return cases


def summarize(cases: Sequence[dict[str, float]]) -> dict[str, float]:
    """Means over cases of every metric, and Score, the harmonic mean of the three scores."""
    keys = [key for key in dict.fromkeys(key for case in cases for key in case) if key != "case_id"]  # cases may lack a group
    summary = {key: mean(case[key] for case in cases if key in case) for key in keys}
    if all(f"{g}_score" in summary for g in GROUPS):
        summary["score"] = harmonic_mean([summary[f"{g}_score"] for g in GROUPS])
    return summary


def counterfact_scores(model: TransformerBridge, records: Sequence[CounterFactRecord]) -> dict[str, float]:
    """The summarised CounterFact metrics of ``model`` on ``records`` (no edit is made)."""
    return summarize(case_metrics(model, records))
