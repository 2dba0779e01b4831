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
    memory = Memory(2, 7, {}, np.zeros(4), [(" a", 1.0), (" c", 0.5)], [(" b", -1.0), (" d", -0.5)], [])
    assert "neuron 7" in plot_memory(memory).axes[0].get_title()
    table = memory.plot(k=1).axes[0].tables[0]
    assert {row for row, _ in table.get_celld()} == {0, 1}  # the header and k = 1 row
    study = InterventionStudy(10, -0.5, -0.05, 0.4, 0.02, 3.0, 1, [1, 2], {})
    bars = study.plot().axes[0]
    assert "relative change" in bars.get_ylabel() and len(bars.patches) == 4


def test_knowledge_neurons_plot_their_share_per_layer():
    from workbench.locate.neurons import KnowledgeNeurons

    found = KnowledgeNeurons(["p1", "p2"], " Paris", [[0, 1], [2, 5], [2, 7]], [[], []])
    ax = found.plot(n_layers=4).axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    np.testing.assert_allclose(heights, [100 / 3, 0, 200 / 3, 0])
    assert ax.get_xlabel() == "layer" and "%" in ax.get_ylabel()
    assert ax.get_title() == "3 knowledge neurons of 1 fact"


def test_bench_plot_shows_each_score_unedited_and_edited():
    from workbench.evaluate.bench import BenchResult

    before = {"efficacy_score": 10.0, "paraphrase_score": 20.0, "neighborhood_score": 90.0, "score": 18.0}
    after = {"efficacy_score": 95.0, "paraphrase_score": 80.0, "neighborhood_score": 70.0, "score": 80.5}
    ax = BenchResult("rome", [3], 5, before, after, [], 1.0).plot().axes[0]
    heights = [bar.get_height() for bar in ax.patches]
    assert heights == [10.0, 20.0, 90.0, 18.0, 95.0, 80.0, 70.0, 80.5]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["ES", "PS", "NS", "S"]
    assert ax.get_ylabel() == "score (%)" and "rome" in ax.get_title()


def test_scaling_result_plots_each_metric_against_the_number_of_edits():
    from workbench.evaluate.scaling import ScalingResult

    runs = [{"method": "ft", "n_edits": n, "before": {}, "after": {"efficacy_score": es, "paraphrase_score": es,
             "neighborhood_score": 100 - es, "score": 50.0, "fluency": 3.0}, "edit_seconds": 1.0, "peak_mb": 1.0}
            for n, es in ((1, 100.0), (10, 60.0))]
    figure = ScalingResult("batch", 0, runs).plot()
    efficacy = figure.axes[0]
    (line,) = efficacy.get_lines()
    assert list(line.get_xdata()) == [1, 10] and list(line.get_ydata()) == [100.0, 60.0]
    assert all(ax.get_xlabel() for ax in figure.axes if ax.get_lines())


def test_each_method_keeps_one_colour_across_results_and_beside_panels():
    from matplotlib.colors import to_hex

    from workbench.evaluate.scaling import ScalingResult
    from workbench.plot.scaling import method_colours, plot_scaling

    def runs(method):
        return [{"method": method, "n_edits": n, "before": {}, "after": {"score": 50.0}} for n in (1, 10)]

    batch, sequential = ScalingResult("batch", 0, runs("memit") + runs("ft")), ScalingResult("sequential", 1, runs("ft"))
    colours = method_colours([batch, sequential], more=["rome", "ft"])
    assert colours == {"memit": "C0", "ft": "C1", "rome": "C2"}  # first appearance; "ft" is not coloured twice
    (ax,) = plot_scaling([batch, sequential], ["score"]).axes
    drawn = {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines() if "(" in line.get_label()}
    assert drawn == {"memit (batch)": to_hex("C0"), "ft (batch)": to_hex("C1"), "ft (sequential)": to_hex("C1")}
