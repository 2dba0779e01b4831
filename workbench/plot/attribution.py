"""Attribution figures: neuron attributions per layer, knowledge neurons across layers, token and
layer attributions over a prompt, and a neuron's value read as tokens."""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from workbench.locate.attribution import NeuronAttribution
    from workbench.locate.memories import Memory
    from workbench.locate.neurons import KnowledgeNeurons
    from workbench.locate.token_attribution import TokenAttribution


def plot_neuron_attribution(result: NeuronAttribution, ax: Axes | None = None) -> Figure:
    """Heatmap of IG attributions (layers x neurons), with the layer totals in the labels."""
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.45 * len(result.layers) + 1.6), constrained_layout=True)
    limit = float(np.abs(result.attributions).max()) or 1.0
    image = ax.imshow(result.attributions, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                      interpolation="nearest")
    ax.set_yticks(range(len(result.layers)))
    ax.set_yticklabels([f"{l} (sum {s:+.3f})" for l, s in zip(result.layers, result.attributions.sum(1))])
    ax.set_ylabel("layer")
    ax.set_xlabel("FFN neuron")
    ax.set_title(f"IG attribution of {result.target}({result.answer.strip()!r}) | {result.prompt!r}", fontsize=10)
    ax.figure.colorbar(image, ax=ax).set_label("attribution")
    return ax.figure


def plot_layer_counts(counts: Sequence[int], n_facts: int) -> Figure:
    """Share of knowledge neurons in each layer, over many facts (Dai et al., Figure 4)."""
    counts = np.asarray(counts)
    figure, ax = plt.subplots(figsize=(5, 3.2), constrained_layout=True)
    ax.bar(range(len(counts)), 100 * counts / max(1, counts.sum()), color="tab:green")
    ax.set_xlabel("layer")
    ax.set_ylabel("share of knowledge neurons (%)")
    ax.set_title(f"{int(counts.sum())} knowledge neurons of {n_facts} fact{'s' if n_facts != 1 else ''}", fontsize=10)
    return figure


def plot_knowledge_neurons(found: KnowledgeNeurons, n_layers: int) -> Figure:
    """Share of one fact's knowledge neurons in each of the model's ``n_layers`` layers."""
    return plot_layer_counts(found.by_layer(n_layers), n_facts=1)


def plot_token_attribution(result: TokenAttribution) -> Figure:
    """Left: attribution per input token. Right: per layer and position, at block outputs."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 0.3 * len(result.tokens) + 1.8), constrained_layout=True)
    positions = np.arange(len(result.tokens))
    left.barh(positions, result.token_scores, color="tab:purple")
    left.set_yticks(positions)
    left.set_yticklabels([repr(t) for t in result.tokens])
    left.invert_yaxis()
    left.set_xlabel(f"attribution to p({result.answer.strip()!r})")
    left.set_title("input tokens (embedding)", fontsize=10)
    limit = float(np.abs(result.layer_scores).max()) or 1.0
    image = right.imshow(result.layer_scores.T, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    right.set_yticks(positions)
    right.set_yticklabels([repr(t) for t in result.tokens])
    right.set_xlabel("layer (block output)")
    right.set_title("residual stream", fontsize=10)
    figure.colorbar(image, ax=right).set_label("attribution")
    return figure


def plot_memory(memory: Memory, k: int = 10) -> Figure:
    """A table of the tokens a neuron's value promotes and suppresses most."""
    figure, ax = plt.subplots(figsize=(5.5, 0.3 * k + 1.2), constrained_layout=True)
    ax.axis("off")
    rows = [[repr(p[0]), f"{p[1]:+.2f}", repr(s[0]), f"{s[1]:+.2f}"]
            for p, s in zip(memory.promoted[:k], memory.suppressed[:k])]
    table = ax.table(cellText=rows, colLabels=["promoted", "logit", "suppressed", "logit"], loc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    ax.set_title(f"value of neuron {memory.neuron} in layer {memory.layer}, read through the unembedding",
                 fontsize=10)
    return figure


def plot_intervention_study(study) -> Figure:
    """Mean relative change of p(answer) when knowledge neurons are suppressed or amplified, for
    the facts they were found for and for unrelated facts (Dai et al., Figure 3)."""
    figure, ax = plt.subplots(figsize=(5.2, 3.4), constrained_layout=True)
    modes = ["suppress", "amplify"]
    for offset, (kind, colour) in enumerate((("related", "tab:green"), ("unrelated", "tab:gray"))):
        values = [100 * getattr(study, f"{mode}_{kind}") for mode in modes]
        ax.bar(np.arange(2) + (offset - 0.5) * 0.35, values, width=0.35, color=colour, label=f"{kind} facts")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(range(2))
    ax.set_xticklabels(["suppress (x0)", "amplify (x2)"])
    ax.set_ylabel("mean relative change of p(answer) (%)")
    ax.set_title(f"knowledge neurons of {study.n_facts - study.facts_without_neurons} facts", fontsize=10)
    ax.legend(fontsize=8)
    return figure
