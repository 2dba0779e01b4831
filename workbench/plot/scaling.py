"""The scaling figure (after Meng et al. 2023, Figure 1): each CounterFact metric against the number
of edits, one line per method, solid for batch and dashed for sequential editing."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from workbench.errors import InvalidRequestError
from workbench.evaluate.metric_table import METRICS
from workbench.evaluate.scaling import ScalingResult

PANELS = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score", "fluency")
"""The metrics :func:`plot_scaling` draws by default, one panel each."""
STYLES = {"batch": "-", "sequential": "--"}


def method_colours(results: Sequence[ScalingResult], more: Sequence[str] = ()) -> dict[str, str]:
    """Matplotlib colour (``"C0"``, ``"C1"``, ...) of each method, in order of first appearance in
    ``results``' runs, then ``more``: the colours :func:`plot_scaling` uses, for panels drawn beside it."""
    order = dict.fromkeys([*(run["method"] for result in results for run in result.runs), *more])
    return {method: f"C{index}" for index, method in enumerate(order)}


def plot_scaling(results: Sequence[ScalingResult], metrics: Sequence[str] = PANELS,
                 axes: Sequence[Axes] | None = None) -> Figure:
    """One panel per metric; x: number of edits (log scale); the unedited model's value on the
    largest set of cases is the dotted grey line. ``axes``: one per metric, to draw into a larger
    figure (default: a new figure)."""
    if axes is None:
        axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics), 4.0), constrained_layout=True)[1]
    elif len(axes) != len(metrics):
        raise InvalidRequestError(f"{len(metrics)} metrics need as many axes, got {len(axes)}")
    figure = np.atleast_1d(axes)[0].figure
    colours = method_colours(results)
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for result in results:
            methods = list(dict.fromkeys(run["method"] for run in result.runs))
            for method in methods:
                runs = sorted((r for r in result.runs if r["method"] == method), key=lambda r: r["n_edits"])
                label = f"{method} ({result.mode})"
                ax.plot([r["n_edits"] for r in runs], [r["after"].get(metric, np.nan) for r in runs],
                        STYLES.get(result.mode, "-"), marker="o", markersize=3, color=colours[method], label=label)
            largest = max(result.runs, key=lambda r: r["n_edits"])
            if metric in largest["before"]:
                ax.axhline(largest["before"][metric], color="grey", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("number of edits")
        ax.set_ylabel(METRICS[metric].axis_label if metric in METRICS else metric)
        ax.set_title(METRICS[metric].label if metric in METRICS else metric, fontsize=10)
    handles, labels = np.atleast_1d(axes)[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncol=min(len(labels), 5), fontsize=8)
    figure.suptitle("Editing at scale on CounterFact cases (dotted: unedited model)", fontsize=11)
    return figure
