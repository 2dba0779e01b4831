"""The sequential-editing figure (after Fang et al. 2025, AlphaEdit, Figure 1 and Table 1): each
metric after every batch against the number of edits so far, one line per method; where free-generation
exact match was measured, a dashed line of the same colour beside the teacher-forced score."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from workbench.evaluate.metric_table import METRICS
from workbench.evaluate.sequential import SequentialResult

PANELS = ("efficacy_score", "paraphrase_score", "neighborhood_score", "fresh_neighborhood", "perplexity", "fluency")
"""The metrics :func:`plot_sequential` draws by default, one panel each (titled from
:data:`workbench.evaluate.metric_table.METRICS`; the three scores are of all edits so far)."""
FREE_GENERATION = {
    "efficacy_score": "efficacy_generation_em",
    "paraphrase_score": "paraphrase_generation_em",
    "neighborhood_score": "neighborhood_generation_em",
    "fresh_neighborhood": "fresh_neighborhood_generation",
}
"""teacher-forced metric -> its free-generation exact match, drawn dashed in the same panel."""


def _value(row: dict, metric: str) -> float:
    return row["edited"].get(metric, np.nan) if metric in row["edited"] else row.get(metric, np.nan)


def plot_sequential(results: Sequence[SequentialResult], metrics: Sequence[str] = PANELS) -> Figure:
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
        values = [_value(row, metric) for result in results for row in result.rows]
        if metric == "perplexity" and np.nanmax(values) > 10 * np.nanmin(values):
            ax.set_yscale("log")  # a run that breaks the model would flatten every other line
        ax.set_xlabel("edits so far")
        ax.set_ylabel(METRICS[metric].axis_label if metric in METRICS else metric, fontsize=8)
        ax.set_title(METRICS[metric].label if metric in METRICS else metric, fontsize=10)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=max(1, len(labels)), fontsize=8)
    sampled = sorted({result.settings.get("scored_per_batch") for result in results} - {None})
    scored = f"; edits scored: the first {', '.join(map(str, sampled))} of every batch" if sampled else ""
    every = sorted({result.settings.get("measure_every", 1) for result in results})
    when = "every batch" if every == [1] else f"every {' or '.join(map(str, every))} batches"
    figure.suptitle(f"Sequential editing: measured after {when} and the last{scored}", fontsize=11)
    return figure
