"""Regenerate the editing-at-scale figure of the bundled fact model (after MEMIT's Figure 1).

    python figures/scaling.py [--edits 1,10,100] [--methods rome,memit,kn,ft,ft-l]

Writes, under figures/:
  scaling_batch.json, scaling_sequential.json   the table behind the figure, one run per mode
  scaling.png                                   each CounterFact metric vs number of edits
  (scaling_batch_memit_1000.json, MEMIT with 1,000 edits in one batch, is written by
   `workbench bench --methods memit --edits 1000 --fluency-tokens 20 --out figures`: 13 minutes)
Deterministic: the first N cases of the bundled benchmark, fixed seeds. Sequential mode writes
one edit at a time. On 2 CPU cores, N = 100 for all five methods in both modes takes about
15 minutes, most of it ROME's sequential edits.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.evaluate.scaling import MODES, run_scaling  # noqa: E402
from workbench.plot.scaling import plot_scaling  # noqa: E402
from workbench.zoo.benchmark import benchmark  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the scaling figure.")
    parser.add_argument("--edits", default="1,10,100")
    parser.add_argument("--methods", default="rome,memit,kn,ft,ft-l")
    args = parser.parse_args()
    counts = [int(n) for n in args.edits.split(",")]
    methods = args.methods.split(",")
    model = workbench.load_model()
    records = benchmark(max(counts))
    results = []
    for mode in MODES:
        result = run_scaling(model, records, methods, counts, mode=mode)
        result.save(HERE / f"scaling_{mode}.json")
        print(f"\n{mode}\n{result.table()}", flush=True)
        results.append(result)
    plot_scaling(results).savefig(HERE / "scaling.png", dpi=120)


if __name__ == "__main__":
    main()
