"""How editing methods hold up as edits pile up (the scaling study of Meng et al. 2023, Figure 1).

For each method and each number of edits N, the first N CounterFact cases are written into the
model and all N are measured with the CounterFact metrics, then the model is restored:

* ``batch``: all N edits in one call of the editor (what MEMIT is built for; ROME and the
  knowledge-neuron editor apply a batch request by request);
* ``sequential``: the edits arrive in groups of ``batch_size`` (1 by default), each written on
  top of the previous ones without restoring, as a user accumulating edits over time would.

Statistics (C) and the edit layer are those of the unedited model throughout
(:func:`workbench.edit.stats.pinned_statistics`); one untimed edit per method computes them
before the timed runs. Each run records edit wall time, peak memory and the layers edited. The
neighbourhood score of N edits leaves out neighbourhood prompts about the N cases' own subjects
(:func:`workbench.evaluate.metrics.without_edited_neighbours`). Limits: the fluency of a run is measured on the
generation prompts of at most ``fluency_cases`` of its cases, to keep large N affordable.
"""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.edit.alphaedit import forget_edited_keys
from workbench.edit.ultraedit import forget_normalisers
from workbench.edit.api import edit
from workbench.edit.intercept import forget_rules
from workbench.edit.stats import pinned_statistics
from workbench.engines import LocalEngine, RayEngine
from workbench.errors import InvalidRequestError
from workbench.evaluate.fluency import fluency
from workbench.evaluate.metric_table import short_name
from workbench.evaluate.metrics import case_metrics, summarize, without_edited_neighbours
from workbench.evaluate.resources import PeakMemory
from workbench.families import set_parameter
from workbench.models import hf_state_dict
from workbench.results import JsonResult

MODES = ("batch", "sequential")


@dataclass(repr=False)
class ScalingResult(JsonResult):
    """One row per (method, number of edits): metrics before and after, edit seconds, peak memory
    (``peak_mb``), what the edits keep: ``memory_bytes`` (a memory-based editor's edit memory) and
    ``changed_weights`` (weight elements that differ from the unedited model's)."""

    mode: str
    batch_size: int
    runs: list = field(default_factory=list)
    settings: dict = field(default_factory=dict)

    def table(self, metrics: Sequence[str] = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score",
                                               "efficacy_generation_em", "paraphrase_generation_em",
                                               "neighborhood_generation_em", "fluency")) -> str:
        """Plain-text table: method, N, each metric after the edits, seconds, peak MB."""
        header = f"{'method':<8}{'N':>6}" + "".join(f"{short_name(m):>9}" for m in metrics) + f"{'seconds':>10}{'peak MB':>9}"
        lines = [header, "-" * len(header)]
        for run in self.runs:
            values = "".join(f"{run['after'].get(m, float('nan')):>9.1f}" for m in metrics)
            lines.append(f"{run['method']:<8}{run['n_edits']:>6}{values}{run['edit_seconds']:>10.1f}{run['peak_mb']:>9.0f}")
        return "\n".join(lines)

    @classmethod
    def merged(cls, results: Sequence[ScalingResult]) -> ScalingResult:
        """One result with the runs of several, e.g. a 1-100 sweep and a separate 1,000-edit run, so
        each method plots as one line. Runs are ordered by method (first appearance) then by N.

        Raises:
            InvalidRequestError: the results differ in mode, batch size or fluency settings, or two
                of them measured the same (method, number of edits).
        """
        if not results:
            raise InvalidRequestError("give at least one scaling result to merge")

        def protocol(result: ScalingResult) -> tuple:
            return (result.mode, result.batch_size, result.settings.get("fluency_cases"),
                    result.settings.get("fluency_tokens"))

        if len({protocol(result) for result in results}) > 1:
            raise InvalidRequestError("only results of one mode, batch size and fluency setting can be merged, got "
                                      f"{sorted({protocol(result) for result in results}, key=str)}")
        runs = [run for result in results for run in result.runs]
        measured = [(run["method"], run["n_edits"]) for run in runs]
        if len(set(measured)) < len(measured):
            raise InvalidRequestError("two results measured the same (method, number of edits); keep one of them")
        order = list(dict.fromkeys(method for method, _ in measured))
        hparams = {method: options for result in results for method, options in result.settings.get("hparams", {}).items()}
        return cls(
            mode=results[0].mode,
            batch_size=results[0].batch_size,
            runs=sorted(runs, key=lambda run: (order.index(run["method"]), run["n_edits"])),
            settings={**results[0].settings, "hparams": hparams},
        )


def run_scaling(
    model: TransformerBridge,
    records: Sequence[CounterFactRecord],
    methods: Sequence[str],
    edit_counts: Sequence[int],
    *,
    mode: str = "batch",
    batch_size: int = 1,
    fluency_cases: int = 20,
    fluency_tokens: int = 20,
    free_generation: bool = True,
    progress: bool = True,
    hparams: dict[str, dict] | None = None,
    checkpoint: str | Path | None = None,
    engine: LocalEngine | RayEngine | None = None,
) -> ScalingResult:
    """Measure every method at every number of edits; the model is left unedited.

    Args:
        hparams: per-method keyword arguments of :func:`workbench.edit` (hyper-parameters and
            ``layer``), e.g. ``{"memit": {"span": 2}, "rome": {"layer": 3}}``.
        free_generation: also measure the exact match and token F1 of greedy generations
            (:mod:`workbench.evaluate.generation`).
        checkpoint: a JSON file the result is saved to after every run. If it exists, it must
            hold a run of this mode and these settings (e.g. one that was interrupted): its runs
            are kept and not repeated, so a long sweep resumes where it stopped.
        engine: where the (method, number of edits) runs happen, e.g. ``RayEngine(workers=4)``
            (:mod:`workbench.engines`): each run is independent (edits written, measured, restored).
            The unedited model is measured here. Edit seconds of runs on shared CPUs contend.

    Raises:
        InvalidRequestError: bad mode, methods, numbers of edits or batch size, or a checkpoint
            made with another mode or other settings.
    """
    if mode not in MODES:
        raise InvalidRequestError(f"unknown mode {mode!r}; choose one of {MODES}")
    if not methods or not edit_counts:
        raise InvalidRequestError("give at least one method and one number of edits")
    if max(edit_counts) > len(records) or min(edit_counts) < 1:
        raise InvalidRequestError(f"numbers of edits must be between 1 and the {len(records)} cases available")
    if batch_size < 1:
        raise InvalidRequestError(f"batch_size must be at least 1, got {batch_size}")
    hparams = hparams or {}
    result = ScalingResult(mode=mode, batch_size=batch_size if mode == "sequential" else 0,
                           settings={"fluency_cases": fluency_cases, "fluency_tokens": fluency_tokens,
                                     "free_generation": free_generation, "hparams": hparams})
    if checkpoint is not None and Path(checkpoint).exists():
        result = _resumed(result, ScalingResult.load(checkpoint), checkpoint)
    done = {(run["method"], run["n_edits"]) for run in result.runs}
    plan = [(method, n) for method in methods for n in sorted(set(edit_counts)) if (method, n) not in done]
    # the unedited model's measure of each size: the checkpoint's runs already hold it for theirs
    befores = {run["n_edits"]: run["before"] for run in result.runs}
    for n in tqdm(sorted({n for _, n in plan} - set(befores)), desc="unedited model", unit="size", disable=not progress):
        befores[n] = _measure(model, records[:n], fluency_cases, fluency_tokens, free_generation)
    work = partial(_edited_run, mode=mode, batch_size=batch_size, hparams=hparams, fluency_cases=fluency_cases,
                   fluency_tokens=fluency_tokens, free_generation=free_generation)
    order = list(dict.fromkeys([*methods, *(run["method"] for run in result.runs)]))

    def keep(index: int, run: dict) -> None:  # each run as it arrives, so a checkpoint holds every finished one
        result.runs.append({"method": run["method"], "n_edits": run["n_edits"], "before": befores[run["n_edits"]], **run})
        result.runs.sort(key=lambda run: (order.index(run["method"]), run["n_edits"]))
        if checkpoint is not None:
            result.save(checkpoint)

    (engine or LocalEngine()).map(model, work, [(method, list(records[:n])) for method, n in plan],
                                  desc=f"scaling ({mode})", progress=progress, on_result=keep)
    return result


def _edited_run(model: TransformerBridge, run: tuple[str, list[CounterFactRecord]], *, mode: str, batch_size: int,
                hparams: dict, fluency_cases: int, fluency_tokens: int, free_generation: bool) -> dict:
    """One (method, cases) run: the cases written in ``mode``, timed, measured, and the model restored.

    Statistics (C) and the edit layer stay those of the unedited model (pinned); an untimed one-case
    edit computes them first, so the timed edits measure editing alone.
    """
    method, cases = run
    groups = [cases] if mode == "batch" else [cases[i : i + batch_size] for i in range(0, len(cases), batch_size)]
    with pinned_statistics(model):
        edit(model, cases[:1], method, check_targets=False, **hparams.get(method, {})).restore()
        # One copy of the weights restores the model after the run; keeping every group's edit
        # result instead (each holds copies of the parameters it touched) grew to 7.9 GB for
        # 1,000 sequential knowledge-neuron edits.
        unedited = _parameters_copy(model)
        layers: list[int] = []
        settings: dict = {}
        memory_bytes = 0
        try:
            started = time.perf_counter()
            with PeakMemory(model.cfg.device) as peak:
                for group in groups:
                    applied = edit(model, group, method, check_targets=False, **hparams.get(method, {}))
                    layers = layers or applied.layers
                    settings = settings or applied.info["hparams"]
                    memory_bytes += applied.info.get("memory_bytes", 0)
                    del applied
            seconds = time.perf_counter() - started
            after = _measure(model, cases, fluency_cases, fluency_tokens, free_generation)
            changed = _changed_elements(model, unedited)
        finally:
            _restore_parameters(model, unedited)
            forget_edited_keys(model)
            forget_normalisers(model)
            forget_rules(model)  # memory-based editors' caches
    return {"method": method, "n_edits": len(cases), "after": after, "edit_seconds": seconds,
            "peak_mb": peak.megabytes, "layers": layers, "memory_bytes": memory_bytes, "changed_weights": changed,
            "hparams_in_effect": settings}


def _resumed(fresh: ScalingResult, saved: ScalingResult, path: str | Path) -> ScalingResult:
    """``fresh`` (no runs yet) with the runs of the checkpoint ``saved``, if both have one protocol."""
    settings = json.loads(json.dumps(fresh.settings))  # as saved: tuples become lists
    if (saved.mode, saved.batch_size, saved.settings) != (fresh.mode, fresh.batch_size, settings):
        raise InvalidRequestError(
            f"the checkpoint {path} was made with other settings ({saved.mode}, batch size {saved.batch_size}, "
            f"{saved.settings}); delete it or pass another path")
    fresh.runs.extend(saved.runs)
    return fresh


def _parameters_copy(model: TransformerBridge) -> dict[str, torch.Tensor]:
    """Every parameter's values under its Hugging Face name (offloaded ones from their weights map)."""
    parameters = {name.replace("._original_component", "") for name, _ in model.original_model.named_parameters()}
    return {name: values.detach().clone() for name, values in hf_state_dict(model).items() if name in parameters}


def _changed_elements(model: TransformerBridge, copy: dict[str, torch.Tensor]) -> int:
    """How many weight elements differ from ``copy`` (0 for the memory-based editors)."""
    now = hf_state_dict(model)
    return sum(int((now[name] != values).sum()) for name, values in copy.items())


def _restore_parameters(model: TransformerBridge, copy: dict[str, torch.Tensor]) -> None:
    """Write back the parameters that differ from ``copy``; the others are left untouched, so the weights'
    fingerprint (:mod:`workbench.fingerprint`) need not hash them again."""
    now = hf_state_dict(model)
    for name, values in copy.items():
        if not torch.equal(now[name], values):
            set_parameter(model, name, values)


def _measure(model: TransformerBridge, cases: Sequence[CounterFactRecord], fluency_cases: int, tokens: int,
             free_generation: bool) -> dict:
    """CounterFact metrics of ``cases`` (written together: neighbourhood prompts about their own
    subjects are left out, their number kept as ``neighbour_prompts_excluded``), free-generation ones
    where asked, and fluency."""
    measured, dropped = without_edited_neighbours(cases, [case.requested_rewrite.subject for case in cases])
    metrics = {**summarize(case_metrics(model, measured, free_generation)), "neighbour_prompts_excluded": dropped}
    prompts = [case.generation_prompts[0] for case in cases[:fluency_cases] if case.generation_prompts]
    if prompts and tokens:
        metrics["fluency"] = fluency(model, prompts, max_new_tokens=tokens)
    return metrics
