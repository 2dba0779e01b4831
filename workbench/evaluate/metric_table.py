"""The one table of the workbench's editing metrics: name, short name, label, definition, direction,
unit and paper. Evaluation, plots, the command line and the story read their names and labels
here; ``docs/concepts/counterfact-metrics.md`` lists every row (a test checks it).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric: ``key`` as results store it, ``short`` as tables print it, ``label`` for axes."""

    key: str
    short: str
    label: str
    definition: str
    higher_is_better: bool
    unit: str
    paper: str

    @property
    def axis_label(self) -> str:
        """The label with its unit, for a plot's axis."""
        return f"{self.label} ({self.unit})" if self.unit else self.label


_COUNTERFACT = "Meng et al. 2022, ROME, section 3.2"
_QAEDIT = "Yang et al. 2025, QAEdit (arXiv 2502.11177)"
_MEND = "Mitchell et al. 2022, MEND, section 5"

METRICS: dict[str, Metric] = {metric.key: metric for metric in (
    Metric("efficacy_score", "ES", "Efficacy Score",
           "share of rewrite prompts with p(target_new) > p(target_true)", True, "%", _COUNTERFACT),
    Metric("paraphrase_score", "PS", "Paraphrase Score",
           "share of paraphrase prompts with p(target_new) > p(target_true)", True, "%", _COUNTERFACT),
    Metric("neighborhood_score", "NS", "Neighborhood Score",
           "share of neighbourhood prompts with p(target_true) > p(target_new)", True, "%", _COUNTERFACT),
    Metric("score", "S", "Score", "harmonic mean of ES, PS and NS", True, "%", _COUNTERFACT),
    Metric("efficacy_magnitude", "EMag", "Efficacy Magnitude",
           "mean p(target_new) - p(target_true) on rewrite prompts", True, "", _COUNTERFACT),
    Metric("paraphrase_magnitude", "PMag", "Paraphrase Magnitude",
           "mean p(target_new) - p(target_true) on paraphrase prompts", True, "", _COUNTERFACT),
    Metric("neighborhood_magnitude", "NMag", "Neighborhood Magnitude",
           "mean p(target_true) - p(target_new) on neighbourhood prompts", True, "", _COUNTERFACT),
    Metric("edit_success", "ESucc", "Edit Success (token acc.)",
           "share of rewrite and paraphrase prompts whose every target_new token is the argmax", True, "%", _MEND),
    Metric("neighborhood_accuracy", "NAcc", "Neighbourhood token acc.",
           "share of neighbourhood prompts whose every target_true token is the argmax (its drop: drawdown)",
           True, "%", _MEND),
    Metric("efficacy_generation_em", "ES-gen", "Efficacy, free generation (EM)",
           "share of rewrite prompts whose greedy generation starts with target_new", True, "%", _QAEDIT),
    Metric("paraphrase_generation_em", "PS-gen", "Paraphrase, free generation (EM)",
           "share of paraphrase prompts whose greedy generation starts with target_new", True, "%", _QAEDIT),
    Metric("neighborhood_generation_em", "NS-gen", "Neighbourhood, free generation (EM)",
           "share of neighbourhood prompts whose greedy generation still starts with target_true", True, "%",
           _QAEDIT),
    Metric("efficacy_generation_f1", "ES-F1", "Efficacy, free generation (F1)",
           "mean token F1 (normalised words) of the greedy generation against target_new", True, "%", _QAEDIT),
    Metric("paraphrase_generation_f1", "PS-F1", "Paraphrase, free generation (F1)",
           "mean token F1 (normalised words) of the greedy generation against target_new", True, "%", _QAEDIT),
    Metric("neighborhood_generation_f1", "NS-F1", "Neighbourhood, free generation (F1)",
           "mean token F1 (normalised words) of the greedy generation against target_true", True, "%", _QAEDIT),
    Metric("fresh_neighborhood", "fresh NS", "Fresh neighbourhood",
           "Neighborhood Score of cases never edited, measured after a sequence of edits", True, "%",
           "Fang et al. 2025, AlphaEdit (sequential editing)"),
    Metric("fluency", "fluency", "Fluency",
           "weighted bi- and tri-gram entropy (bits) of sampled generations from the case's prompts", True, "n-gram entropy",
           _COUNTERFACT),
    Metric("perplexity", "ppl", "Perplexity", "perplexity on held-out text", False, "",
           "language-model quality; Gupta et al. 2024 (model collapse under sequential edits)"),
)}
"""Every metric by key, in the order tables list them."""


def short_name(key: str) -> str:
    """The short name tables print for ``key`` (the key itself for values outside the table)."""
    return METRICS[key].short if key in METRICS else key
