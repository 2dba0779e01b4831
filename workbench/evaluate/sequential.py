"""Sequential editing: batches of edits written one after another, measured after every batch.

A deployed model is kept up to date by editing it again and again without restoring. AlphaEdit
(Fang et al. 2025, section 4) measures this as 2,000 CounterFact edits in batches of 100, where
MEMIT's neighbourhood score and fluency collapse as edits accumulate. After each batch this runner
records:

* ``edited``: the CounterFact scores (ES / PS / NS, Score) over *all* edits so far, so early edits
  that later batches overwrite show up (the unedited row: over the first batch's cases); with
  ``scored_per_batch`` over the first that many cases of every batch written so far, an even sample
  that keeps long runs affordable (scoring every edit after every batch grows with the square of
  the number of batches);
* ``fresh_neighborhood``: NS over the neighbourhood prompts of ``fresh`` cases that are never
  edited (facts the edits should leave alone);
* ``fluency``: generation n-gram entropy on the generation prompts of the first ``fluency_cases``
  records (edited from the first batch on);
* ``perplexity``: on ``held_out`` texts (keep them out of the statistics corpus's sample).

Neighbourhood prompts about any subject the run edits are left out of both NS measurements
(:func:`workbench.evaluate.metrics.without_edited_neighbours`): their answers are meant to change.
Statistics, edit layers and context prefixes stay those of the unedited model
(:func:`workbench.edit.stats.pinned_statistics`). The model is restored, bit-exactly, at the end.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.edit.api import edit
from workbench.edit.stats import pinned_statistics
from workbench.errors import InvalidRequestError
from workbench.evaluate.fluency import fluency
from workbench.evaluate.metric_table import short_name
from workbench.evaluate.metrics import case_metrics, summarize, without_edited_neighbours
from workbench.results import JsonResult
from workbench.tokens import pad_right

SCORES = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score",
          "efficacy_generation_em", "paraphrase_generation_em", "neighborhood_generation_em")


@dataclass(repr=False)
class SequentialResult(JsonResult):
    """One row per batch (after it was written) and one for the unedited model (``edits`` 0)."""

    method: str
    batch_size: int
    rows: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def table(self) -> str:
        """Plain text: edits so far, their ES/PS/NS/Score and free-generation ES/PS/NS, fresh NS, fluency,
        perplexity, seconds."""
        names = [short_name(s) for s in (*SCORES, "fresh_neighborhood", "fluency", "perplexity")] + ["seconds"]
        header = f"{'edits':>6}" + "".join(f"{name:>10}" for name in names)
        lines = [f"{self.method}, batches of {self.batch_size}", header, "-" * len(header)]
        for row in self.rows:
            values = [row["edited"].get(s, float("nan")) for s in SCORES]
            values += [row["fresh_neighborhood"], row.get("fluency", float("nan")), row["perplexity"], row["edit_seconds"]]
            lines.append(f"{row['edits']:>6}" + "".join(f"{v:>10.2f}" for v in values))
        return "\n".join(lines)


@torch.no_grad()
def perplexity(model: TransformerBridge, texts: Sequence[str], max_tokens: int = 128, batch_size: int = 16) -> float:
    """exp of the mean next-token NLL over the first ``max_tokens`` tokens of each text (BOS first)."""
    rows = [model.tokenizer(text)["input_ids"][:max_tokens] for text in texts]
    rows = [row for row in rows if len(row) > 1]
    if not rows:
        raise InvalidRequestError("perplexity needs texts of at least one token")
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        ids = pad_right(batch, model.tokenizer.pad_token_id, model.cfg.device)  # [b, pos]
        log_probs = model(ids, return_type="logits").float().log_softmax(-1)[:, :-1]  # [b, pos-1, vocab]
        nll = -log_probs.gather(-1, ids[:, 1:, None])[..., 0]  # [b, pos-1]
        real = torch.tensor([[p < len(row) - 1 for p in range(ids.shape[1] - 1)] for row in batch], device=nll.device)
        total += float(nll[real].sum())
        count += int(real.sum())
    return math.exp(total / count)


def run_sequential(
    model: TransformerBridge,
    records: Sequence[CounterFactRecord],
    method: str,
    *,
    batch_size: int,
    fresh: Sequence[CounterFactRecord],
    held_out: Sequence[str],
    fluency_cases: int = 20,
    fluency_tokens: int = 20,
    free_generation: bool = True,
    scored_per_batch: int | None = None,
    measure_every: int = 1,
    after_batch: Callable[[SequentialResult], None] | None = None,
    progress: bool = True,
    **hparams,
) -> SequentialResult:
    """Write ``records`` in batches of ``batch_size`` with ``method`` (keyword arguments of
    :func:`workbench.edit` in ``hparams``), measuring after each batch; the model is restored.
    ``scored_per_batch`` limits the edited cases scored to the first that many of each batch;
    ``measure_every`` measures after every that many batches (and after the last) rather than each;
    ``after_batch`` is called with the result so far after every measurement (to save long runs as
    they go); a row's ``edit_seconds`` is the editing time since the row before;
    ``free_generation`` adds the exact match and token F1 of greedy generations
    (:mod:`workbench.evaluate.generation`), also of the fresh neighbours (``fresh_neighborhood_generation``)."""
    if batch_size < 1 or not records:
        raise InvalidRequestError("give at least one record and a batch size of at least 1")
    if measure_every < 1:
        raise InvalidRequestError(f"measure_every must be at least 1, got {measure_every}")
    if scored_per_batch is not None and scored_per_batch < 1:
        raise InvalidRequestError(f"scored_per_batch must be at least 1, got {scored_per_batch}")
    if not fresh or not held_out:
        raise InvalidRequestError("give fresh (never edited) cases and held-out texts to measure collateral damage")
    result = SequentialResult(method=method, batch_size=batch_size, settings={
        "hparams": hparams, "fresh_cases": len(fresh), "held_out_texts": len(held_out),
        "fluency_cases": fluency_cases, "fluency_tokens": fluency_tokens, "free_generation": free_generation,
        "scored_per_batch": scored_per_batch,
        "measure_every": measure_every})

    fluency_prompts = [case.generation_prompts[0] for case in records[:fluency_cases] if case.generation_prompts]
    subjects = [case.requested_rewrite.subject for case in records]
    records, dropped = without_edited_neighbours(records, subjects)
    fresh, dropped_fresh = without_edited_neighbours(fresh, subjects)
    result.settings["neighbour_prompts_excluded"] = {"edited": dropped, "fresh": dropped_fresh}
    batches = [list(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]
    scored = [batch[:scored_per_batch] for batch in batches]  # all of each batch when None

    def measure(edits: int, cases: list[CounterFactRecord], seconds: float) -> dict:
        fresh_scores = summarize(case_metrics(model, fresh, free_generation))
        row = {"edits": edits, "edit_seconds": round(seconds, 2), "scored_cases": len(cases),
               "edited": summarize(case_metrics(model, cases, free_generation)),
               "fresh_neighborhood": fresh_scores["neighborhood_score"],
               "perplexity": perplexity(model, held_out)}
        if free_generation:
            row["fresh_neighborhood_generation"] = fresh_scores["neighborhood_generation_em"]
        if fluency_prompts and fluency_tokens:
            row["fluency"] = fluency(model, fluency_prompts, max_new_tokens=fluency_tokens)
        return row

    applied = []
    try:
        with pinned_statistics(model):
            result.rows.append(measure(0, scored[0], 0.0))  # the first batch's cases, unedited
            seconds = 0.0  # editing time since the last measurement
            for number, batch in enumerate(tqdm(batches, desc=f"{method} batches", disable=not progress)):
                started = time.perf_counter()
                applied.append(edit(model, batch, method, check_targets=False, **hparams))
                seconds += time.perf_counter() - started
                result.settings.setdefault("hparams_in_effect", applied[0].info["hparams"])
                if (number + 1) % measure_every and number + 1 < len(batches):
                    continue
                edits = sum(len(done) for done in batches[: number + 1])
                result.rows.append(measure(edits, [case for part in scored[: number + 1] for case in part], seconds))
                seconds = 0.0
                if progress:
                    tqdm.write(result.table().splitlines()[-1])
                if after_batch is not None:
                    after_batch(result)
    finally:
        for done in reversed(applied):
            done.restore()
    return result
