"""The edit layer measured two ways on smollm2-135m: causal tracing's MLP effect and ROME's edit
Score per layer (Hase et al. 2023), from the measurements kept in the model's record.

    python -m workbench.zoo.tuning trace --model smollm2-135m --save    # the tracing curve
    python -m workbench.zoo.tuning layers --model smollm2-135m --save   # the edit sweep
    python figures/edit_layer.py

Writes figures/edit_layer_smollm2.png. It plots what the tuning commands measured (on the
benchmark's tuning split and the record's known facts); it does not re-measure.
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from workbench.evaluate.layer_sweep import LayerSweep  # noqa: E402
from workbench.plot.localization import plot_localization_vs_editing  # noqa: E402
from workbench.zoo.records import RECORDS  # noqa: E402
from workbench.zoo.tuning import tuning_file  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    record = RECORDS["smollm2-135m"]
    measured = json.loads(tuning_file(record).read_text())
    trace, layers = measured["trace"], measured["layers"]
    sweep = LayerSweep(**{k: layers[k] for k in ("method", "layers", "scores", "unedited", "n_cases", "edit_seconds")})
    scores = {layer: sweep.scores[str(layer)]["score"] for layer in sweep.layers}
    best = [layer for layer, score in scores.items() if score == max(scores.values())]
    figure = plot_localization_vs_editing(
        trace["mlp_effect_at_subject_last"], sweep,
        title=f"smollm2-135m: tracing peak layer {trace['recommended_layer']} ({trace['facts']} facts, window "
              f"{trace['window']});\nROME Score highest at layers {', '.join(map(str, best))} "
              f"({sweep.n_cases} tuning cases)")
    figure.savefig(HERE / "edit_layer_smollm2.png", dpi=130)
    print("wrote", HERE / "edit_layer_smollm2.png")


if __name__ == "__main__":
    main()
