"""Plots: pure functions from a result to a matplotlib ``Figure``, one module per result type.

:func:`plot` draws any result with the function for its type; ``result.plot(...)`` (every
:class:`~workbench.results.JsonResult`) calls it, looking this package up at call time, so the
result types never import the plot layer.
"""
from __future__ import annotations

from collections.abc import Callable

from matplotlib.figure import Figure

from workbench.evaluate.bench import BenchResult
from workbench.evaluate.scaling import ScalingResult
from workbench.evaluate.sequential import SequentialResult
from workbench.locate.attribution import NeuronAttribution
from workbench.locate.effects import AverageIndirectEffect
from workbench.locate.kn_analysis import InterventionStudy
from workbench.locate.memories import Memory
from workbench.locate.neurons import KnowledgeNeurons
from workbench.locate.patching import PatchingResult
from workbench.locate.subject_swap import SubjectSwapResult
from workbench.locate.token_attribution import TokenAttribution
from workbench.locate.tracing import TraceResult
from workbench.plot.attribution import (plot_intervention_study, plot_knowledge_neurons, plot_layer_counts, plot_memory,
                                        plot_neuron_attribution, plot_token_attribution)
from workbench.plot.editing import plot_bench, plot_edit_probabilities, target_probabilities
from workbench.plot.localization import plot_localization_vs_editing
from workbench.plot.patching import plot_patching
from workbench.plot.scaling import plot_scaling
from workbench.plot.sequential import plot_sequential
from workbench.plot.subject_swap import plot_subject_swap
from workbench.plot.tracing import plot_average_effect, plot_trace, plot_trace_panels

PLOT_OF: dict[type, Callable[..., Figure]] = {
    TraceResult: plot_trace,                       # (result, ax=None): ROME-style heatmap
    AverageIndirectEffect: plot_average_effect,    # (result, kinds=None): ROME Figure 2-style curves
    PatchingResult: plot_patching,                 # (result, ax=None)
    SubjectSwapResult: plot_subject_swap,          # (result, ax=None)
    NeuronAttribution: plot_neuron_attribution,    # (result, ax=None)
    TokenAttribution: plot_token_attribution,      # (result)
    KnowledgeNeurons: plot_knowledge_neurons,      # (result, n_layers)
    Memory: plot_memory,                           # (result, k=10)
    InterventionStudy: plot_intervention_study,    # (result)
    BenchResult: plot_bench,                       # (result)
    ScalingResult: lambda result: plot_scaling([result]),
    SequentialResult: lambda result: plot_sequential([result]),
}
"""The plot function of each result type (its extra arguments in the comment)."""


def plot(result, *args, **kwargs) -> Figure:
    """The figure of any workbench result, drawn by the function :data:`PLOT_OF` names for its type
    (``args`` and ``kwargs`` go to it)."""
    for kind in type(result).__mro__:
        if kind in PLOT_OF:
            return PLOT_OF[kind](result, *args, **kwargs)
    raise TypeError(f"no plot for a {type(result).__name__}; plots exist for "
                    f"{', '.join(sorted(kind.__name__ for kind in PLOT_OF))}")


__all__ = [
    "PLOT_OF", "plot", "plot_average_effect", "plot_bench", "plot_edit_probabilities", "plot_intervention_study",
    "plot_knowledge_neurons", "plot_layer_counts", "plot_localization_vs_editing", "plot_memory",
    "plot_neuron_attribution", "plot_patching", "plot_scaling", "plot_sequential", "plot_subject_swap",
    "plot_token_attribution", "plot_trace", "plot_trace_panels", "target_probabilities",
]
