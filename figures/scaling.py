"""Regenerate the editing-at-scale figure of the bundled fact model (after MEMIT's Figure 1).

    python figures/scaling.py [--edits 1,10,100] [--methods rome,memit,kn,ft,ft-l] [--replot]

Writes, under figures/:
  scaling_batch.json, scaling_sequential.json   the sweep behind the figure, one run per mode
  scaling.png                                   each CounterFact metric vs number of edits
The figure also takes in every figures/scaling_<mode>_*.json: larger runs made separately, e.g.
  workbench bench --methods kn,ft,ft-l --edits 1000 --mode batch --fluency-tokens 20 --out figures
(that command also writes a PNG of its own, which the figure does not need).
``--replot`` redraws from the saved JSON files without running anything.
Deterministic: the first N cases of the bundled benchmark, fixed seeds. Sequential mode writes
one edit at a time. On 2 CPU cores, N = 100 for all five methods in both modes takes about
15 minutes, most of it ROME's sequential edits; 1,000 MEMIT edits in one batch take 13 minutes.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.evaluate.scaling import MODES, ScalingResult, run_scaling  # noqa: E402
from workbench.plot.scaling import plot_scaling  # noqa: E402
from workbench.zoo.benchmark import benchmark  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the scaling figure.")
    parser.add_argument("--edits", default="1,10,100")
    parser.add_argument("--methods", default="rome,memit,kn,ft,ft-l")
    parser.add_argument("--replot", action="store_true", help="redraw from the saved JSON files")
    args = parser.parse_args()
    counts = [int(n) for n in args.edits.split(",")]
    methods = args.methods.split(",")
    model = None if args.replot else workbench.load_model()
    results = []
    for mode in MODES:
        if args.replot:
            sweep = ScalingResult.load(HERE / f"scaling_{mode}.json")
        else:
            sweep = run_scaling(model, benchmark("factgpt", max(counts)), methods, counts, mode=mode)
            sweep.save(HERE / f"scaling_{mode}.json")
        larger = [ScalingResult.load(path) for path in sorted(HERE.glob(f"scaling_{mode}_*.json"))]
        result = ScalingResult.merged([sweep, *larger])
        print(f"\n{mode}\n{result.table()}", flush=True)
        results.append(result)
    plot_scaling(results).savefig(HERE / "scaling.png", dpi=120)


if __name__ == "__main__":
    main()
