"""Plots: pure functions from a result to a matplotlib ``Figure``, one module per result type."""
from workbench.plot.tracing import plot_average_effect, plot_trace, plot_trace_panels

__all__ = ["plot_average_effect", "plot_trace", "plot_trace_panels"]
