"""A workbench for factual knowledge in transformer language models.

The main entry points are importable from here, so a notebook needs one import line::

    import workbench
    model = workbench.load_model("smollm2-135m")
    workbench.top_predictions(model, "The Eiffel Tower is located in the city of")
    workbench.trace(model, "The Eiffel Tower is located in the city of", "Eiffel Tower").plot()
    with workbench.edit(model, prompt="The Eiffel Tower is located in the city of",
                        subject="Eiffel Tower", target="Rome") as result:
        workbench.top_predictions(model, "The Eiffel Tower is in")

A model of your own: :func:`calibrate` measures its settings once (prompt prefix, known facts,
benchmark, edit layers, editor hyper-parameters); :func:`load_model` applies them afterwards.
Where is a fact stored: :func:`trace`, :func:`trace_kinds`, :func:`trace_many`,
:func:`activation_patching`, :func:`attribution_patching`, :func:`attribute`,
:func:`knowledge_neurons`, :func:`memory`. Can it be rewritten: :func:`edit` (ROME, MEMIT,
AlphaEdit, knowledge neurons, fine-tuning), :func:`load_edit`. Did the edit work: :func:`case_metrics`,
:func:`summarize`, :func:`run_bench`, :func:`run_scaling`, :func:`run_sequential`, with
:func:`benchmark` giving a bundled model's CounterFact cases. Plots: :mod:`workbench.plot`.
"""
__version__ = "0.1.0"

from workbench import edit, plot
from workbench.calibration import calibrate
from workbench.data import CounterFactRecord, EditRequest
from workbench.edit import EditResult, load_edit
from workbench.evaluate.bench import run_bench
from workbench.evaluate.metrics import case_metrics, summarize
from workbench.evaluate.scaling import run_scaling
from workbench.evaluate.sequential import run_sequential
from workbench.locate.attribution import attribute
from workbench.locate.effects import trace_many
from workbench.locate.memories import memory
from workbench.locate.neurons import intervention_effect, knowledge_neurons
from workbench.locate.patching import activation_patching, attribution_patching
from workbench.locate.tracing import trace, trace_kinds
from workbench.models import load_model, save_model
from workbench.predict import greedy_completion, top_predictions
from workbench.zoo.benchmark import benchmark

__all__ = [
    "CounterFactRecord", "EditRequest", "EditResult", "__version__", "activation_patching", "attribute",
    "attribution_patching", "benchmark", "calibrate", "case_metrics", "edit", "greedy_completion", "intervention_effect",
    "knowledge_neurons", "load_edit", "load_model", "memory", "run_bench", "run_scaling", "run_sequential", "save_model",
    "summarize", "top_predictions", "trace", "trace_kinds", "trace_many",
]

