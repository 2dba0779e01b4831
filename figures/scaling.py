"""Regenerate the editing-at-scale figure (after MEMIT's Figure 1) of a bundled model.

    python figures/scaling.py [--model smollm2-135m] [--edits 1,10,100] [--methods ...] [--replot]

Writes, under figures/:
  scaling_<model>_batch.json, scaling_<model>_sequential.json   the sweep, one run per mode
  scaling_<model>.png                                            each CounterFact metric vs number of edits
The figure also takes in every figures/scaling_<model>_<mode>_*.json: larger runs made separately, e.g.
  workbench bench --model factgpt --methods kn,ft,ft-l --edits 1000 --mode batch --out figures
(renamed with the model's name; that command also writes a PNG of its own, which the figure does not need).
``--replot`` redraws from the saved JSON files without running anything; ``--methods`` reruns only
those editors, replacing their runs in the saved sweep and keeping the others'. A sweep saves each run as it
finishes (scaling_<model>_<mode>.partial.json) and an interrupted one resumes from there.

Deterministic: the first N cases of the model's benchmark (smollm2-135m: its evaluation split, the
record's tuned editor settings; factgpt: the whole benchmark), fixed seeds. Sequential mode writes
one edit at a time. smollm2-135m is the real-model figure (methods rome, memit, alphaedit, kn, ft,
ft-l); factgpt's is kept as the control where ROME's premise does not hold. ROME and the knowledge-neuron
editor apply a batch one request after another, so their batch and sequential runs are the same
computation: on smollm2-135m each is run once, ROME in sequential mode and KN in batch mode.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.evaluate.scaling import MODES, ScalingResult, run_scaling  # noqa: E402
from workbench.models import record_of  # noqa: E402
from workbench.plot.scaling import plot_scaling  # noqa: E402

HERE = Path(__file__).parent
DEFAULT_METHODS = {
    "smollm2-135m": {"batch": "memit,alphaedit,kn,ft,ft-l", "sequential": "rome,memit,alphaedit,ft,ft-l"},
    "factgpt": {"batch": "rome,memit,kn,ft,ft-l", "sequential": "rome,memit,kn,ft,ft-l"},
}
SPLITS = {"smollm2-135m": "evaluation", "factgpt": None}


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the scaling figure.")
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(DEFAULT_METHODS))
    parser.add_argument("--edits", default="1,10,100")
    parser.add_argument("--methods", help="comma-separated editors (default: all the model's)")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--replot", action="store_true", help="redraw from the saved JSON files")
    args = parser.parse_args()
    counts = [int(n) for n in args.edits.split(",")]
    model = None if args.replot else workbench.load_model(args.model)
    results = []
    for mode in args.modes.split(","):
        path = HERE / f"scaling_{args.model}_{mode}.json"
        if not args.replot:
            methods = (args.methods or DEFAULT_METHODS[args.model][mode]).split(",")
            records = record_of(model).benchmark(max(counts), split=SPLITS[args.model])
            partial = path.with_suffix(".partial.json")
            fresh = run_scaling(model, records, methods, counts, mode=mode, checkpoint=partial)
            if path.exists():  # a rerun of some methods replaces their runs and keeps the others'
                fresh = _replacing(ScalingResult.load(path), fresh)
            fresh.save(path)
            partial.unlink()
        larger = [ScalingResult.load(extra) for extra in sorted(HERE.glob(f"scaling_{args.model}_{mode}_*.json"))]
        result = ScalingResult.merged([ScalingResult.load(path), *larger])
        print(f"\n{args.model}, {mode}\n{result.table()}", flush=True)
        results.append(result)
    plot_scaling(results).savefig(HERE / f"scaling_{args.model}.png", dpi=120)


def _replacing(saved: ScalingResult, fresh: ScalingResult) -> ScalingResult:
    """``saved`` with the runs of ``fresh``'s methods replaced by ``fresh``'s, methods in saved order."""
    rerun = {run["method"] for run in fresh.runs}
    kept = ScalingResult(mode=saved.mode, batch_size=saved.batch_size, settings=saved.settings,
                         runs=[run for run in saved.runs if run["method"] not in rerun])
    merged = ScalingResult.merged([kept, fresh])
    order = list(dict.fromkeys(run["method"] for run in saved.runs + fresh.runs))
    merged.runs.sort(key=lambda run: (order.index(run["method"]), run["n_edits"]))
    return merged


if __name__ == "__main__":
    main()
