"""Causal-tracing figures in the conventions of ROME (Meng et al. 2022, Figure 1 and 2).

Rows are tokens with the subject's tokens starred, columns are layers; Purples for hidden
states, Greens for MLP outputs, Reds for attention outputs; the colour bar is p(answer).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from workbench.locate.effects import AverageIndirectEffect
    from workbench.locate.tracing import TraceResult

COLOURMAPS = {"hidden": "Purples", "mlp": "Greens", "attn": "Reds"}
TITLES = {"hidden": "single restored layer", "mlp": "restored MLP outputs", "attn": "restored attention outputs"}


def token_labels(result: TraceResult) -> list[str]:
    """Token strings with the subject's tokens starred, as in ROME's figures."""
    return [
        f"{token!r}*" if result.subject_start <= i < result.subject_end else repr(token)
        for i, token in enumerate(result.tokens)
    ]


def plot_trace(result: TraceResult, ax: Axes | None = None) -> Figure:
    """Heatmap of p(answer) for every restored (token, layer) of one trace."""
    figure, ax = _figure_and_axes(ax, (max(3.5, 0.35 * result.scores.shape[1] + 2), 0.3 * len(result.tokens) + 1.5))
    image = ax.pcolormesh(result.scores, cmap=COLOURMAPS[result.kind], vmin=result.corrupted_prob,
                          shading="nearest")
    ax.invert_yaxis()
    ax.set_yticks(range(len(result.tokens)))
    ax.set_yticklabels(token_labels(result))
    ax.set_xticks(range(0, result.scores.shape[1], max(1, result.scores.shape[1] // 8)))
    window = result.settings.get("window", 1)
    suffix = f" (window {window} centred on layer)" if result.kind != "hidden" else ""
    ax.set_xlabel(f"layer{suffix}")
    severed = result.settings.get("severed")
    ax.set_title(f"Impact of {TITLES[result.kind]}" + (f", {severed} severed" if severed else ""), fontsize=10)
    bar = figure.colorbar(image, ax=ax)
    bar.set_label(f"p({result.answer.strip()!r})")
    return figure


def plot_trace_panels(results: Sequence[TraceResult]) -> Figure:
    """The three-panel figure: hidden, MLP and attention traces of one prompt side by side."""
    height = 0.3 * len(results[0].tokens) + 1.8
    figure, axes = plt.subplots(1, len(results), figsize=(4.6 * len(results), height), constrained_layout=True)
    for ax, result in zip(axes if len(results) > 1 else [axes], results):
        plot_trace(result, ax=ax)
    figure.suptitle(f"{results[0].prompt!r}: clean p={results[0].clean_prob:.2f}, "
                    f"corrupted p={results[0].corrupted_prob:.2f}", fontsize=11)
    return figure


def plot_average_effect(effect: AverageIndirectEffect, kinds: Sequence[str] | None = None) -> Figure:
    """Average indirect effect per layer, one line per token role, one panel per kind (ROME Fig. 2)."""
    kinds = list(kinds or effect.kinds)
    figure, axes = plt.subplots(1, len(kinds), figsize=(4.6 * len(kinds), 3.4), constrained_layout=True,
                                squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        values = effect.effects[kind]
        for role_index, role in enumerate(effect.roles):
            if effect.counts[kind][role_index] > 0:
                ax.plot(values[role_index], label=role, marker="o", markersize=3)
        ax.set_xlabel("layer")
        ax.set_ylabel("average indirect effect on p(answer)")
        ax.set_title(f"{TITLES[kind]} ({effect.n_facts} facts)", fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    return figure


def _figure_and_axes(ax: Axes | None, size: tuple[float, float]) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    figure, ax = plt.subplots(figsize=size, constrained_layout=True)
    return figure, ax
