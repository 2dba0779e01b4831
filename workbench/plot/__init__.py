"""Plots: pure functions from a result to a matplotlib ``Figure``, one module per result type."""
from workbench.plot.attribution import (plot_intervention_study, plot_layer_counts, plot_memory, plot_neuron_attribution,
                                        plot_token_attribution)
from workbench.plot.editing import plot_bench, plot_edit_probabilities, target_probabilities
from workbench.plot.localization import plot_localization_vs_editing
from workbench.plot.patching import plot_patching
from workbench.plot.scaling import plot_scaling
from workbench.plot.sequential import plot_sequential
from workbench.plot.subject_swap import plot_subject_swap
from workbench.plot.tracing import plot_average_effect, plot_trace, plot_trace_panels

__all__ = [
    "plot_average_effect", "plot_bench", "plot_edit_probabilities", "plot_intervention_study", "plot_layer_counts",
    "plot_localization_vs_editing", "plot_memory", "plot_neuron_attribution", "plot_patching", "plot_scaling",
    "plot_sequential", "plot_subject_swap", "plot_token_attribution", "plot_trace", "plot_trace_panels",
    "target_probabilities",
]
