"""Regenerate the ROME figures and results of the bundled fact model.

    python figures/rome.py [--cases 100]

Writes, under figures/:
  rome_edit_probabilities.png   p(target_new) vs p(target_true) before/after one edit, on the
                                rewrite, paraphrase and neighbourhood prompts
  rome_bench.json               CounterFact metrics of independent edits on the first cases
Deterministic: fixed cases, fixed seeds.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.edit.layers import default_edit_layer  # noqa: E402
from workbench.models import record_of  # noqa: E402
from workbench.evaluate.bench import run_bench  # noqa: E402
from workbench.plot.editing import plot_edit_probabilities, target_probabilities  # noqa: E402
from workbench.zoo.benchmark import benchmark  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the ROME figures.")
    parser.add_argument("--cases", type=int, default=100)
    args = parser.parse_args()
    model = workbench.load_model()
    layer = default_edit_layer(model, record_of(model).known_facts(48))
    records = benchmark("factgpt", args.cases)
    record = records[0]
    before = target_probabilities(model, record)
    with workbench.edit(model, record, layer=layer):
        after = target_probabilities(model, record)
    plot_edit_probabilities(before, after, record).savefig(HERE / "rome_edit_probabilities.png", dpi=120)
    result = run_bench(model, records, "rome", layer=layer)
    result.save(HERE / "rome_bench.json")
    print(result.table())
    print(f"figures written to {HERE.resolve()}")


if __name__ == "__main__":
    main()
