"""Does tracing in bfloat16 change the average-indirect-effect figure? Measured, not assumed.

Traces the same known facts of a bundled model twice with :func:`workbench.trace_many`, same noise
and settings, once in float32 and once with bfloat16 matrix products (``dtype="bfloat16"``), and
reports per kind and token role: the largest absolute difference of the averaged indirect effect,
the same relative to the figure's largest effect, the correlation of the two curves, whether the
layer the figure recommends (MLP at the last subject token) and the MEMIT window agree, and the time
of each run. Both figures are saved side by side.

    python benchmarks/aie_precision.py [--model smollm2-135m] [--facts 12] [--samples 3] [--out-dir figures]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib
import numpy as np

import workbench
from workbench.edit.layers import tracing_window
from workbench.locate.effects import trace_many
from workbench.models import record_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--facts", type=int, default=12)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--out-dir", default="figures")
    args = parser.parse_args()
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model = workbench.load_model(args.model)
    facts = record_of(model).known_facts(args.facts)
    effects, seconds = {}, {}
    for dtype in ("float32", "bfloat16"):
        started = time.perf_counter()
        effects[dtype] = trace_many(model, facts, samples=args.samples, window=tracing_window(model), dtype=dtype,
                                    progress=False)
        seconds[dtype] = time.perf_counter() - started
    exact, reduced = effects["float32"], effects["bfloat16"]
    largest = max(float(np.nanmax(np.abs(exact.effects[kind]))) for kind in exact.kinds)
    per_kind = {}
    for kind in exact.kinds:
        full, half = exact.effects[kind], reduced.effects[kind]  # [roles, layers]
        present = ~np.isnan(full[:, 0])
        difference = float(np.abs(full[present] - half[present]).max())
        per_kind[kind] = {
            "max_abs_difference": difference,
            "relative_to_largest_effect": difference / largest,
            "correlation": float(np.corrcoef(full[present].ravel(), half[present].ravel())[0, 1]),
        }
    report = {
        "model": args.model,
        "facts": len(facts),
        "samples": args.samples,
        "largest_effect": largest,
        "per_kind": per_kind,
        "recommended_layer": {"float32": exact.recommend_layer(), "bfloat16": reduced.recommend_layer()},
        "memit_window": {"float32": exact.recommend_layers(), "bfloat16": reduced.recommend_layers()},
        "seconds": seconds,
        "speedup": seconds["float32"] / seconds["bfloat16"],
    }
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"aie_precision_{args.model}.json").write_text(json.dumps(report, indent=2) + "\n")
    for dtype, effect in effects.items():
        figure = effect.plot()
        figure.suptitle(f"{args.model}, {len(facts)} facts, {args.samples} samples: {dtype}")
        figure.savefig(out / f"aie_precision_{args.model}_{dtype}.png", dpi=100)
        plt.close(figure)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
