"""The sequential-editing figure (after Fang et al. 2025, AlphaEdit, Figure 1 and Table 1): each
metric after every batch against the number of edits so far, one line per method; where free-generation
exact match was measured, a dashed line of the same colour beside the teacher-forced score."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from workbench.evaluate.sequential import SequentialResult

PANELS = {
    "efficacy_score": ("Efficacy", "Efficacy Score, all edits so far (%)"),
    "paraphrase_score": ("Paraphrase", "Paraphrase Score, all edits so far (%)"),
    "neighborhood_score": ("Neighbourhood", "Neighborhood Score, all edits so far (%)"),
    "fresh_neighborhood": ("Fresh neighbourhood", "Neighborhood Score, never-edited cases (%)"),
    "perplexity": ("Perplexity", "perplexity on held-out text"),
    "fluency": ("Fluency", "generation n-gram entropy"),
}
"""metric -> (panel title, y-axis label)."""
FREE_GENERATION = {
    "efficacy_score": "efficacy_generation_em",
    "paraphrase_score": "paraphrase_generation_em",
    "neighborhood_score": "neighborhood_generation_em",
    "fresh_neighborhood": "fresh_neighborhood_generation",
}
"""teacher-forced metric -> its free-generation exact match, drawn dashed in the same panel."""


def _value(row: dict, metric: str) -> float:
    return row["edited"].get(metric, np.nan) if metric in row["edited"] else row.get(metric, np.nan)


def plot_sequential(results: Sequence[SequentialResult], metrics: Sequence[str] = tuple(PANELS)) -> Figure:
    """One panel per metric; x: edits written so far (0: the unedited model)."""
    figure, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.8), constrained_layout=True)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for index, result in enumerate(results):
            edits = [row["edits"] for row in result.rows]
            ax.plot(edits, [_value(row, metric) for row in result.rows], marker="o",
                    markersize=3, color=f"C{index}", label=f"{result.method} (batches of {result.batch_size})")
            generated = [_value(row, FREE_GENERATION.get(metric, "")) for row in result.rows]
            if not np.isnan(generated).all():
                ax.plot(edits, generated, linestyle="--", marker="x", markersize=3, color=f"C{index}",
                        label=f"{result.method}, free generation (exact match)")
        ax.set_xlabel("edits so far")
        title, label = PANELS.get(metric, (metric, metric))
        ax.set_ylabel(label, fontsize=8)
        ax.set_title(title, fontsize=10)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=max(1, len(labels)), fontsize=8)
    sampled = sorted({result.settings.get("scored_per_batch") for result in results} - {None})
    scored = f"; edits scored: the first {', '.join(map(str, sampled))} of every batch" if sampled else ""
    figure.suptitle(f"Sequential editing: measured after every batch{scored}", fontsize=11)
    return figure
