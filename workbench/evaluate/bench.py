"""The bench runner: edit each CounterFact case on its own, evaluate, restore.

As in ROME's evaluation (Meng et al. 2022), every case is an independent edit of the unedited
model: edit, measure the case's metrics and the fluency of generations from its generation
prompts, restore the weights bit-exactly, go on. The unedited model is measured on the same
cases first, which gives the baseline and the Drawdown.
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from statistics import mean

from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.edit.api import EDITORS, edit, hyperparameters
from workbench.engines import LocalEngine, RayEngine
from workbench.evaluate.fluency import fluency
from workbench.evaluate.metric_table import METRICS
from workbench.evaluate.metrics import case_metrics, summarize
from workbench.results import JsonResult

SUMMARY_KEYS = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score", "efficacy_magnitude",
                "paraphrase_magnitude", "neighborhood_magnitude", "edit_success", "neighborhood_accuracy",
                "efficacy_generation_em", "paraphrase_generation_em", "neighborhood_generation_em",
                "efficacy_generation_f1", "paraphrase_generation_f1", "neighborhood_generation_f1", "fluency")
"""The rows of :meth:`BenchResult.table`, labelled from :data:`workbench.evaluate.metric_table.METRICS`."""


@dataclass(repr=False)
class BenchResult(JsonResult):
    """Before/after CounterFact metrics of independent edits, per case and summarised."""

    method: str
    layers: list
    """The layers the edits changed (those of the first case; every case uses the same setting)."""
    n_cases: int
    before: dict
    after: dict
    cases: list
    edit_seconds: float
    """Mean wall time of one edit (statistics cached)."""
    settings: dict = field(default_factory=dict)

    @property
    def drawdown(self) -> float:
        """Neighbourhood token accuracy lost by editing (percentage points)."""
        return self.before["neighborhood_accuracy"] - self.after["neighborhood_accuracy"]

    def table(self) -> str:
        """The summary as a plain-text table: metric, unedited, edited."""
        lines = [f"{'metric':<38}{'unedited':>10}{'edited':>10}", "-" * 58]
        for key in SUMMARY_KEYS:
            if key in self.after:
                label = f"{METRICS[key].label} ({METRICS[key].short})"
                lines.append(f"{label:<38}{self.before.get(key, float('nan')):>10.2f}{self.after[key]:>10.2f}")
        lines.append(f"{'Drawdown (token acc.)':<38}{'':>10}{self.drawdown:>10.2f}")
        return "\n".join(lines)


def _edited_case(model: TransformerBridge, case: tuple[CounterFactRecord, list[str]], *, method: str,
                 layer: int | None, fluency_tokens: int, free_generation: bool, hparams: dict) -> tuple[dict, list[int]]:
    """One case edited, measured and restored: its metrics (with ``edit_seconds``) and the layers changed."""
    record, prompts = case
    started = time.perf_counter()
    with edit(model, record, method, layer=layer, check_targets=False, **hparams) as result:
        seconds = time.perf_counter() - started
        (metrics,) = case_metrics(model, [record], free_generation)
        metrics["edit_seconds"] = seconds
        details = (result.info.get("requests") or [{}])[0]
        if "v_steps" in details:  # ROME's search for its value vector
            metrics["search_steps"] = details["v_steps"]
        if fluency_tokens and prompts:
            metrics["fluency"] = fluency(model, prompts, max_new_tokens=fluency_tokens)
    return metrics, result.layers


def run_bench(
    model: TransformerBridge,
    records: Sequence[CounterFactRecord],
    method: str = "rome",
    *,
    layer: int | None = None,
    fluency_tokens: int = 30,
    free_generation: bool = True,
    progress: bool = True,
    engine: LocalEngine | RayEngine | None = None,
    **hparams,
) -> BenchResult:
    """Edit every case independently with ``method`` and measure it; the model is left unedited.

    ``layer`` is passed to :func:`workbench.edit` (``None``: the method's default). Cases whose
    ``target_new`` the unedited model already predicts are edited anyway (``check_targets=False``)
    rather than aborting the run; their efficacy says so. ``free_generation`` adds the exact match
    and token F1 of greedy generations (:mod:`workbench.evaluate.generation`). ``engine`` edits the cases elsewhere,
    e.g. on Ray workers (:mod:`workbench.engines`); the unedited model is measured here. In this process,
    work the cases' edits share is done once (:attr:`workbench.edit.api.Editor.independent_edits`: ROME
    searches all cases' targets in one batch).
    """
    before_cases = case_metrics(model, records, free_generation)
    before = summarize(before_cases)
    generation_prompts = [list(r.generation_prompts[:2]) for r in records]
    if fluency_tokens:
        before["fluency"] = fluency(model, [p for ps in generation_prompts for p in ps], max_new_tokens=fluency_tokens)
    work = partial(_edited_case, method=method, layer=layer, fluency_tokens=fluency_tokens,
                   free_generation=free_generation, hparams=hparams)
    in_process = engine is None or isinstance(engine, LocalEngine)
    together = EDITORS[method].independent_edits if method in EDITORS and in_process else None
    with together(model, [r.requested_rewrite for r in records]) if together else contextlib.nullcontext():
        outcomes = (engine or LocalEngine()).map(model, work, list(zip(records, generation_prompts)),
                                                 desc=f"bench {method}", progress=progress)
    cases = [metrics for metrics, _ in outcomes]
    layers = next((changed for _, changed in outcomes if changed), [])
    return BenchResult(
        method=method,
        layers=layers,
        n_cases=len(records),
        before=before,
        after=summarize(cases),
        cases=cases,
        edit_seconds=mean(case["edit_seconds"] for case in cases),
        settings={"hparams": hparams, "hparams_in_effect": dataclasses.asdict(hyperparameters(model, method, **hparams)),
                  "layer": layer, "fluency_tokens": fluency_tokens, "free_generation": free_generation},
    )
