"""ROME's neighbourhood score against the bound on its value change, on tuning cases only.

    python figures/rome_value_bound.py --model gemma3-270m --first 6 --last 36 --bounds 4,1

Each tuning case (``[first, last)`` of the tuning split; the evaluation split is never read) is edited
alone at the model's calibrated settings with ``clamp_norm_factor`` set to each bound (the paper's 4,
and tighter), and ES / PS / NS printed. Session 14 measured on gemma3-270m (cases 6-35, layer 0):
bound 4: 100 / 91.7 / 89.3; bound 1: 100 / 91.7 / 96.3, which put the bound into calibration's ROME grid.
"""
from __future__ import annotations

import argparse

import workbench
from workbench.evaluate.bench import run_bench
from workbench.models import record_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--first", type=int, default=6)
    parser.add_argument("--last", type=int, default=36)
    parser.add_argument("--bounds", default="4,1")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    cases = record_of(model).benchmark(split="tuning")[args.first : args.last]
    for bound in (float(b) for b in args.bounds.split(",")):
        result = run_bench(model, cases, "rome", fluency_tokens=0, free_generation=False, progress=False,
                           clamp_norm_factor=bound)
        scores = {k: round(result.after[k], 1) for k in ("efficacy_score", "paraphrase_score", "neighborhood_score")}
        print(f"bound {bound}: {len(cases)} cases, {scores}, unedited NS {result.before['neighborhood_score']:.1f}",
              flush=True)


if __name__ == "__main__":
    main()
