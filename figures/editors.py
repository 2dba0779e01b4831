"""Compare the editors on smollm2-135m: caching, SERAC and MEND beside ROME and MEMIT.

    python figures/editors.py [--parts single,batch,sequential] [--cases 200] [--edits 1,10,100,1000] [--replot]

Writes, under figures/:
  editors_single_<method>_smollm2-135m.json  caching, SERAC, MEND: each of the first ``--cases`` evaluation
                                             cases edited on its own (``run_bench``); ROME's is
                                             rome_bench_smollm2.json (figures/rome.py, same cases and settings)
  editors_batch_smollm2-135m.json            caching, SERAC, MEND: 1, 10, 100, 1,000 city requests in one call;
                                             MEMIT's runs are memit_cities_smollm2_passes2_lambda6000.json (same
                                             requests, the record's two-pass settings)
  editors_sequential_smollm2-135m.json       ROME one request after another (1, 10, 100)
  editors_smollm2-135m.png                   left: single edits (bars); right: each metric vs number of edits

Batches use the city requests of :mod:`workbench.zoo.mass_requests` (the evaluation split has too few
cases for 1,000); SERAC's classifier and MEND's networks are trained on the *last* 300 of them and the
tuning split, so they never see an evaluated subject. Each part saves a checkpoint as it goes and
resumes from it. SERAC and MEND are trained on first use (about 3 and 5 minutes on 2 cores, cached).
Deterministic: fixed cases and seeds; the record's settings for every method.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from statistics import median

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import workbench  # noqa: E402
from workbench.evaluate.bench import BenchResult, run_bench  # noqa: E402
from workbench.evaluate.scaling import ScalingResult, run_scaling  # noqa: E402
from workbench.models import record_of  # noqa: E402
from workbench.evaluate.metric_table import METRICS  # noqa: E402
from workbench.plot.scaling import method_colours, plot_scaling  # noqa: E402
from workbench.zoo.mass_requests import mass_requests
from workbench.zoo.records import RECORDS  # noqa: E402

HERE = Path(__file__).parent
MODEL = "smollm2-135m"
MEMORY_EDITORS = ("caching", "serac", "mend")
FLUENCY_TOKENS = 30  # as in MEMIT_BATCH, which the comparison reuses
# Single edits skip fluency: two 30-token generations per case took 5-6 of the 6.5 s a cached edit's case
# costs on 2 cores; the batch runs measure it.
SINGLE = {**{m: HERE / f"editors_single_{m}_{MODEL}.json" for m in MEMORY_EDITORS}, "rome": HERE / "rome_bench_smollm2.json"}
BATCH = HERE / f"editors_batch_{MODEL}.json"
SEQUENTIAL = HERE / f"editors_sequential_{MODEL}.json"
MEMIT_BATCH = HERE / "memit_cities_smollm2_passes2_lambda6000.json"
SCORES = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score")


def main() -> None:
    parser = argparse.ArgumentParser(description="Compare caching, SERAC, MEND, ROME and MEMIT on smollm2-135m.")
    parser.add_argument("--parts", default="single,batch,sequential")
    parser.add_argument("--cases", type=int, default=200, help="evaluation cases edited one at a time")
    parser.add_argument("--edits", default="1,10,100,1000", help="batch sizes (city requests)")
    parser.add_argument("--batch-methods", default=",".join(MEMORY_EDITORS), help="editors of the batch part")
    parser.add_argument("--sequential-edits", default="1,10,100", help="ROME's sequential runs")
    parser.add_argument("--replot", action="store_true", help="redraw from the saved JSON files")
    args = parser.parse_args()
    parts = [] if args.replot else args.parts.split(",")
    model = workbench.load_model(MODEL) if parts else None
    if "single" in parts:
        records = record_of(model).benchmark(args.cases, split="evaluation")
        for method in MEMORY_EDITORS:
            if not SINGLE[method].exists():
                run_bench(model, records, method, fluency_tokens=0).save(SINGLE[method])
    for part, path, methods, counts in (("batch", BATCH, args.batch_methods.split(","), args.edits),
                                        ("sequential", SEQUENTIAL, ("rome",), args.sequential_edits)):
        if part in parts:
            counts = [int(n) for n in counts.split(",")]
            records = mass_requests(model.tokenizer, RECORDS[MODEL].relations(), max(counts))
            checkpoint = path.with_suffix(".partial.json")
            run_scaling(model, records, list(methods), counts, mode=part, fluency_tokens=FLUENCY_TOKENS,
                        checkpoint=checkpoint).save(path)
            checkpoint.unlink()
    singles = {method: BenchResult.load(path) for method, path in SINGLE.items() if path.exists()}
    scaling = [ScalingResult.merged([ScalingResult.load(p) for p in (BATCH, MEMIT_BATCH) if p.exists()])]
    if SEQUENTIAL.exists():
        scaling.append(ScalingResult.load(SEQUENTIAL))
    print(single_table(singles), *(result.table() for result in scaling), sep="\n\n")
    plot_comparison(singles, scaling).savefig(HERE / f"editors_{MODEL}.png", dpi=120)


def single_table(singles: dict[str, BenchResult]) -> str:
    """Markdown table of the single-edit results: scores and the median seconds per edit (the mean of
    SERAC and MEND holds their training, which the first edit triggers when nothing is cached)."""
    lines = ["| method | ES | PS | NS | Score | median edit s |", "|---|---|---|---|---|---|"]
    for method, result in singles.items():
        scores = " | ".join(f"{result.after[key]:.1f}" for key in SCORES)
        lines.append(f"| {method} | {scores} | {median(case['edit_seconds'] for case in result.cases):.3f} |")
    return "\n".join(lines)


def plot_comparison(singles: dict[str, BenchResult], scaling: list[ScalingResult]) -> plt.Figure:
    """Left: single-edit scores as grouped bars; right: each score against the number of edits."""
    figure, axes = plt.subplots(1, 1 + len(SCORES), figsize=(3.3 * (2 + len(SCORES)), 4.2), constrained_layout=True,
                                width_ratios=[2] + [1] * len(SCORES))
    bars = axes[0]
    width = 0.8 / max(len(singles), 1)
    colours = method_colours(scaling, list(singles))  # as in the scaling panels
    for i, (method, result) in enumerate(singles.items()):
        bars.bar(np.arange(len(SCORES)) + i * width, [result.after[key] for key in SCORES], width, label=method,
                 color=colours[method])
    bars.set_xticks(np.arange(len(SCORES)) + 0.4 - width / 2, [METRICS[key].label for key in SCORES], fontsize=8)
    bars.set_ylabel("score (%)")
    bars.set_ylim(0, 120)  # room for the legend above the bars
    cases = max((result.n_cases for result in singles.values()), default=0)
    bars.set_title(f"Single edits ({cases} evaluation cases)", fontsize=10)
    bars.legend(fontsize=8, loc="upper center", ncol=len(singles))
    plot_scaling(scaling, SCORES, axes=axes[1:])
    figure.suptitle(f"Editors on {MODEL}: one edit at a time (left), many at once (right; dotted: unedited)",
                    fontsize=11)
    return figure


if __name__ == "__main__":
    main()
