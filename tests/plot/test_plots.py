"""Figures: labelled axes, subject tokens starred, ROME's colour conventions."""
from __future__ import annotations

import numpy as np
import pytest

from workbench.locate.effects import ROLES, AverageIndirectEffect
from workbench.locate.patching import PatchingResult
from workbench.locate.tracing import TraceResult
from workbench.plot import plot_average_effect, plot_trace, plot_trace_panels
from workbench.plot.patching import plot_patching


def _trace(kind: str) -> TraceResult:
    scores = np.linspace(0.1, 0.9, 5 * 3, dtype=np.float32).reshape(5, 3)
    return TraceResult("The capital of France is", "France", ["<bos>", "The", " capital", " of", " France"],
                       4, 5, kind, " Paris", 7, scores, 0.9, 0.1, {"window": 10})


@pytest.mark.parametrize("kind, colourmap", [("hidden", "Purples"), ("mlp", "Greens"), ("attn", "Reds")])
def test_trace_heatmap_follows_rome_conventions(kind, colourmap):
    figure = plot_trace(_trace(kind))
    ax = figure.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[-1].endswith("*") and not labels[0].endswith("*")
    assert ax.get_xlabel().startswith("layer")
    assert ax.collections[0].get_cmap().name == colourmap
    assert "Paris" in figure.axes[1].get_ylabel()  # the colour bar says what is plotted


def test_three_panels():
    figure = plot_trace_panels([_trace(k) for k in ("hidden", "mlp", "attn")])
    assert len([ax for ax in figure.axes if ax.get_xlabel()]) == 3


def test_average_effect_curves_have_one_line_per_present_role():
    effects = {"mlp": np.arange(18, dtype=float).reshape(6, 3)}
    counts = {"mlp": [3, 0, 3, 3, 3, 3]}
    figure = plot_average_effect(AverageIndirectEffect(["mlp"], list(ROLES), effects, counts, 3, 0.9, 0.1))
    ax = figure.axes[0]
    assert len(ax.get_lines()) == 5
    assert ax.get_xlabel() == "layer" and "indirect effect" in ax.get_ylabel()


def test_patching_heatmap_is_centred_on_zero():
    effects = np.array([[0.0, -1.0], [2.0, 0.5]], dtype=np.float32)
    result = PatchingResult("activation", "a b", "a c", ["a", " b"], "hidden", " x", " y", effects, 2.0, 0.0)
    figure = plot_patching(result)
    low, high = figure.axes[0].collections[0].get_clim()
    assert low == -high == -2.0
    assert "logit" in figure.axes[1].get_ylabel()


def test_attribution_plots_are_labelled():
    from workbench.locate.attribution import NeuronAttribution
    from workbench.locate.kn_analysis import InterventionStudy
    from workbench.locate.memories import Memory
    from workbench.locate.token_attribution import TokenAttribution
    from workbench.plot.attribution import plot_layer_counts, plot_memory, plot_neuron_attribution

    values = np.array([[0.1, -0.2, 0.0], [0.3, 0.0, 0.05]], dtype=np.float32)
    ig = NeuronAttribution("p", " x", 1, "prob", [0, 1], values, values, np.zeros(2), 0.5, np.zeros(2))
    ax = plot_neuron_attribution(ig).axes[0]
    assert ax.get_xlabel() == "FFN neuron" and ax.get_ylabel() == "layer"
    assert "+0.350" in ax.get_yticklabels()[1].get_text()  # the layer's total
    tokens = TokenAttribution("a b", " c", ["a", " b"], np.array([0.1, 0.2]), np.zeros((3, 2)))
    left, right = tokens.plot().axes[:2]
    assert "p(' c')" in left.get_xlabel() or "p('c')" in left.get_xlabel()
    assert right.get_xlabel().startswith("layer")
    counts = plot_layer_counts([1, 3, 0], 4).axes[0]
    assert [round(p.get_height()) for p in counts.patches] == [25, 75, 0]
    memory = Memory(2, 7, {}, np.zeros(4), [(" a", 1.0)], [(" b", -1.0)], [])
    assert "neuron 7" in plot_memory(memory).axes[0].get_title()
    study = InterventionStudy(10, -0.5, -0.05, 0.4, 0.02, 3.0, 1, [1, 2], {})
    bars = study.plot().axes[0]
    assert "relative change" in bars.get_ylabel() and len(bars.patches) == 4
