"""Does localization inform editing? Causal tracing's MLP effect and ROME's edit Score per layer on
one pair of axes (the comparison of Hase et al. 2023, "Does Localization Inform Editing?")."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from workbench.evaluate.layer_sweep import LayerSweep


def plot_localization_vs_editing(mlp_effect: Sequence[float], sweep: LayerSweep, title: str = "") -> Figure:
    """``mlp_effect[layer]``: average indirect effect of the MLP output at the last subject token
    (left axis, every layer); the sweep's edit Score per swept layer (right axis). The tracing peak
    is marked dotted, the layers sharing the highest Score dashed."""
    effect = np.asarray(mlp_effect, dtype=float)
    scores = np.array([sweep.scores[str(layer)]["score"] for layer in sweep.layers])
    figure, left = plt.subplots(figsize=(7.6, 3.8), constrained_layout=True)
    left.plot(np.arange(len(effect)), effect, color="tab:green", marker=".", label="tracing: MLP effect at last subject token")
    left.axvline(int(np.argmax(effect)), color="tab:green", linestyle=":", linewidth=1)
    left.set_xlabel("layer")
    left.set_ylabel("average indirect effect (MLP)", color="tab:green")
    right = left.twinx()
    right.plot(sweep.layers, scores, color="tab:purple", marker="o", label=f"{sweep.method.upper()} edit Score")
    best = [layer for layer, score in zip(sweep.layers, scores) if score == scores.max()]
    for layer in best:
        right.axvline(layer, color="tab:purple", linestyle="--", linewidth=1)
    right.set_ylabel(f"{sweep.method.upper()} Score (ES, PS, NS)", color="tab:purple")
    handles = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    left.legend(handles, [h.get_label() for h in handles], loc="center right", fontsize=8)
    left.set_title(title or f"tracing peak: layer {int(np.argmax(effect))}; best edit Score at layer(s) "
                   f"{', '.join(map(str, best))} ({sweep.n_cases} cases)", fontsize=9)
    return figure
