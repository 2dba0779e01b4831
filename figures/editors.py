"""Compare all nine editors on smollm2-135m, on the same held-out cases, and the memory editors at scale.

    python figures/editors.py [--parts single,batch,sequential] [--cases 50] [--methods ...] [--replot]

Writes, under figures/:
  editors_single_<method>_smollm2-135m.json  every editor (FT, FT-L, caching, KN, MEND, SERAC, ROME, MEMIT,
                                             AlphaEdit): each of the first ``--cases`` evaluation cases edited on
                                             its own (``run_bench``: edit, measure, restore), teacher-forced and
                                             free-generation metrics, with the peak resident memory of the run;
                                             each method runs in a process of its own, so memory is its own
  editors_smollm2-135m.png                   the single-edit comparison: CounterFact ES / PS / NS, the seed
                                             lecture's edit success and drawdown, free-generation exact match,
                                             seconds per edit, memory
  editors_batch_smollm2-135m.json            caching, SERAC, MEND: 1, 10, 100, 1,000 city requests in one call
                                             (``--batch-methods`` reruns those, keeping the others' runs);
                                             MEMIT's runs are memit_cities_smollm2_passes2_lambda6000.json (same
                                             requests, the record's two-pass settings)
  editors_sequential_smollm2-135m.json       ROME one request after another (1, 10, 100)
  editors_scaling_smollm2-135m.png           each metric vs number of edits (batch and sequential)

Batches use the city requests of :mod:`workbench.zoo.mass_requests` (the evaluation split has too few
cases for 1,000); SERAC's classifier and MEND's networks are trained on cases built from the knowledge base
and the *last* 300 city requests (``ModelRecord.editor_training_cases``), so they never see an evaluated
subject. A method whose JSON exists is not rerun (delete it to redo). SERAC and MEND are trained on first
use (minutes on 2 cores, cached). Deterministic: fixed cases and seeds; the record's settings for every method.
"""
from __future__ import annotations

import argparse
import dataclasses
import subprocess
import sys
from pathlib import Path
from statistics import median

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import workbench  # noqa: E402
from workbench.evaluate.bench import BenchResult, run_bench  # noqa: E402
from workbench.evaluate.metric_table import METRICS  # noqa: E402
from workbench.evaluate.resources import PeakMemory  # noqa: E402
from workbench.evaluate.scaling import ScalingResult, run_scaling  # noqa: E402
from workbench.models import record_of  # noqa: E402
from workbench.plot.scaling import plot_scaling  # noqa: E402
from workbench.zoo.mass_requests import mass_requests  # noqa: E402
from workbench.zoo.records import RECORDS  # noqa: E402

HERE = Path(__file__).parent
MODEL = "smollm2-135m"
EDITORS = ("ft", "ft-l", "caching", "kn", "mend", "serac", "rome", "memit", "alphaedit")
"""The seed lecture's map of editing methods (fine-tuning, caching, MEND, SERAC, knowledge neurons, ROME)
and the located editors after ROME."""
MEMORY_EDITORS = ("caching", "serac", "mend")
FLUENCY_TOKENS = 30  # as in MEMIT_BATCH, which the batch comparison reuses
BATCH = HERE / f"editors_batch_{MODEL}.json"
SEQUENTIAL = HERE / f"editors_sequential_{MODEL}.json"
MEMIT_BATCH = HERE / "memit_cities_smollm2_passes2_lambda6000.json"
SCORES = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score")


def single_path(method: str) -> Path:
    return HERE / f"editors_single_{method}_{MODEL}.json"


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare the nine editors on smollm2-135m.")
    parser.add_argument("--parts", default="single,batch,sequential")
    parser.add_argument("--cases", type=int, default=50, help="evaluation cases edited one at a time")
    parser.add_argument("--methods", default=",".join(EDITORS), help="editors of the single-edit part")
    parser.add_argument("--edits", default="1,10,100,1000", help="batch sizes (city requests)")
    parser.add_argument("--batch-methods", default=",".join(MEMORY_EDITORS), help="editors of the batch part")
    parser.add_argument("--sequential-edits", default="1,10,100", help="ROME's sequential runs")
    parser.add_argument("--run-one", help=argparse.SUPPRESS)  # one method's single edits, in this process
    parser.add_argument("--replot", action="store_true", help="redraw from the saved JSON files")
    args = parser.parse_args()
    if args.run_one:
        return run_single(args.run_one, args.cases)
    parts = [] if args.replot else args.parts.split(",")
    if "single" in parts:
        for method in args.methods.split(","):
            if not single_path(method).exists():
                subprocess.run([sys.executable, __file__, "--run-one", method, "--cases", str(args.cases)], check=True)
    model = workbench.load_model(MODEL) if {"batch", "sequential"} & set(parts) else None
    for part, path, methods, counts in (("batch", BATCH, args.batch_methods.split(","), args.edits),
                                        ("sequential", SEQUENTIAL, ("rome",), args.sequential_edits)):
        if part in parts:
            counts = [int(n) for n in counts.split(",")]
            records = mass_requests(model.tokenizer, RECORDS[MODEL].relations(), max(counts))
            checkpoint = path.with_suffix(".partial.json")
            fresh = run_scaling(model, records, list(methods), counts, mode=part, fluency_tokens=FLUENCY_TOKENS,
                                checkpoint=checkpoint)
            keeping_other_methods(path, fresh).save(path)
            checkpoint.unlink()
    singles = {method: BenchResult.load(single_path(method)) for method in EDITORS if single_path(method).exists()}
    print(single_table(singles))
    plot_comparison(singles).savefig(HERE / f"editors_{MODEL}.png", dpi=120)
    scaling = [ScalingResult.merged([ScalingResult.load(p) for p in (BATCH, MEMIT_BATCH) if p.exists()])]
    if SEQUENTIAL.exists():
        scaling.append(ScalingResult.load(SEQUENTIAL))
    print(*(result.table() for result in scaling), sep="\n\n")
    figure = plot_scaling(scaling, SCORES)
    figure.suptitle(f"Editors on {MODEL}: many edits at once (solid) or one after another (dashed); dotted: unedited",
                    fontsize=11)
    figure.savefig(HERE / f"editors_scaling_{MODEL}.png", dpi=120)


def keeping_other_methods(path: Path, fresh: ScalingResult) -> ScalingResult:
    """``fresh`` with the runs of the other methods already saved at ``path``: rerunning some editors
    keeps the others' runs."""
    if not path.exists():
        return fresh
    saved = ScalingResult.load(path)
    rerun = {run["method"] for run in fresh.runs}
    kept = dataclasses.replace(saved, runs=[run for run in saved.runs if run["method"] not in rerun])
    return ScalingResult.merged([kept, fresh]) if kept.runs else fresh


def run_single(method: str, cases: int) -> None:
    """One method's single edits of the first ``cases`` evaluation cases, with the run's peak memory."""
    model = workbench.load_model(MODEL)
    records = record_of(model).benchmark(cases, split="evaluation")
    with PeakMemory(model.cfg.device) as peak:
        result = run_bench(model, records, method, fluency_tokens=0)
    result.settings["peak_megabytes_above_model"] = peak.megabytes_above_start
    result.save(single_path(method))


def single_table(singles: dict[str, BenchResult]) -> str:
    """Markdown table of the single-edit results: teacher-forced and free-generation scores, the seed
    lecture's edit success and drawdown, median seconds per edit (the first edit of SERAC and MEND
    holds their training when nothing is cached; the median leaves it out) and the run's peak memory."""
    keys = ("efficacy_score", "paraphrase_score", "neighborhood_score", "efficacy_generation_em",
            "paraphrase_generation_em", "neighborhood_generation_em", "edit_success")
    lines = ["| method | " + " | ".join(METRICS[k].short for k in keys) + " | drawdown | median edit s | peak MB |",
             "|---" * (len(keys) + 4) + "|"]
    for method, result in singles.items():
        scores = " | ".join(f"{result.after[key]:.1f}" for key in keys)
        lines.append(f"| {method} | {scores} | {result.drawdown:.1f} | {_median_seconds(result):.3f} | "
                     f"{result.settings.get('peak_megabytes_above_model', float('nan')):.0f} |")
    before = next(iter(singles.values()), None)
    if before is not None:
        lines.append("| unedited | " + " | ".join(f"{before.before.get(key, float('nan')):.1f}" for key in keys)
                     + " | 0 | | |")
    return "\n".join(lines)


def _median_seconds(result: BenchResult) -> float:
    return median(case["edit_seconds"] for case in result.cases)


def plot_comparison(singles: dict[str, BenchResult]) -> plt.Figure:
    """Grouped bars per editor: CounterFact scores, free-generation exact match, the seed lecture's edit
    success and drawdown; then seconds per edit and peak memory (log scales)."""
    figure, axes = plt.subplots(1, 5, figsize=(22, 5.0), constrained_layout=True, width_ratios=[3, 3, 2, 2, 2])
    methods = list(singles)
    colours = {method: f"C{i}" for i, method in enumerate(methods)}
    width = 0.8 / max(len(methods), 1)
    lecture = {"edit_success": lambda r: r.after["edit_success"], "drawdown": lambda r: r.drawdown}
    groups = [(axes[0], "CounterFact (teacher-forced)", ("efficacy_score", "paraphrase_score", "neighborhood_score"),
               "score (%)"),
              (axes[1], "Free generation", ("efficacy_generation_em", "paraphrase_generation_em",
                                            "neighborhood_generation_em"), "exact match (%)"),
              (axes[2], "Seed lecture's metrics", tuple(lecture), "percent / percentage points")]
    for ax, title, keys, ylabel in groups:
        for i, method in enumerate(methods):
            result = singles[method]
            values = [lecture[k](result) if k in lecture else result.after.get(k, np.nan) for k in keys]
            ax.bar(np.arange(len(keys)) + i * width, values, width, label=method, color=colours[method])
        for j, key in enumerate(keys):  # the unedited model, as a dotted line over each group
            unedited = 0.0 if key == "drawdown" else next(iter(singles.values())).before.get(key, np.nan)
            ax.hlines(unedited, j - width / 2, j + 0.8 - width / 2, colors="grey", linestyles="dotted")
        labels = ["Drawdown (NAcc lost)" if k == "drawdown" else METRICS[k].short for k in keys]
        ax.set_xticks(np.arange(len(keys)) + 0.4 - width / 2, labels, fontsize=8)
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=10)
    axes[0].set_ylim(0, 105)
    figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=len(methods), fontsize=9)
    for ax, title, value, xlabel, scale in (
            (axes[3], "Time per edit (median)", _median_seconds, "seconds (log)", "log"),
            (axes[4], "Peak memory of the run", lambda r: r.settings.get("peak_megabytes_above_model", np.nan),
             "MB above the loaded model", "linear")):
        ax.barh(methods, [value(singles[m]) for m in methods], color=[colours[m] for m in methods])
        ax.set_xscale(scale)
        ax.set_xlabel(xlabel)
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
    cases = max((result.n_cases for result in singles.values()), default=0)
    figure.suptitle(f"Nine editors on {MODEL}, each of {cases} held-out evaluation cases edited on its own "
                    "(dotted: unedited)", fontsize=11)
    return figure


if __name__ == "__main__":
    main()
