"""Patching heatmaps: effect of patching each (token, layer) activation on the logit difference."""
from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from workbench.plot.tracing import TITLES

if TYPE_CHECKING:
    from workbench.locate.patching import PatchingResult


def plot_patching(result: PatchingResult, ax: Axes | None = None) -> Figure:
    """Diverging heatmap (tokens x layers) of a patching result, centred on zero."""
    if ax is None:
        figure, ax = plt.subplots(figsize=(max(3.5, 0.35 * result.effects.shape[1] + 2), 0.3 * len(result.tokens) + 1.5),
                                  constrained_layout=True)
    figure = ax.figure
    limit = float(np.abs(result.effects).max()) or 1.0
    image = ax.pcolormesh(result.effects, cmap="RdBu", vmin=-limit, vmax=limit, shading="nearest")
    ax.invert_yaxis()
    ax.set_yticks(range(len(result.tokens)))
    ax.set_yticklabels([repr(t) for t in result.tokens])
    ax.set_xlabel("layer")
    ax.set_title(f"{result.method} patching, {TITLES[result.kind].replace('restored ', '')}", fontsize=10)
    bar = figure.colorbar(image, ax=ax)
    bar.set_label(f"change in logit({result.answer.strip()!r}) - logit({result.corrupted_answer.strip()!r})")
    return figure
