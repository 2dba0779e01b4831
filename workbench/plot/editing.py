"""Edit figures: p(target_new) against p(target_true) before and after an edit, per prompt group,
and a bench run's CounterFact scores before and after editing."""
from __future__ import annotations

from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.evaluate.metric_table import short_name
from workbench.evaluate.metrics import GROUPS
from workbench.probabilities import score_targets

if TYPE_CHECKING:
    from workbench.evaluate.bench import BenchResult


def target_probabilities(model: TransformerBridge, record: CounterFactRecord) -> dict[str, np.ndarray]:
    """group -> ``[prompts, 2]`` array of (p(target_new), p(target_true)) on the case's prompts."""
    request = record.requested_rewrite
    result = {}
    for group, prompts in record.prompts_by_group().items():
        if prompts:
            targets = [request.target_new] * len(prompts) + [request.target_true] * len(prompts)
            both = score_targets(model, prompts + prompts, targets).log_prob.exp().view(2, len(prompts))
            result[group] = both.T.numpy()
    return result


def plot_edit_probabilities(before: dict[str, np.ndarray], after: dict[str, np.ndarray], record: CounterFactRecord) -> Figure:
    """Mean p(target_new) and p(target_true) on rewrite, paraphrase and neighbourhood prompts,
    before and after the edit (error bars: min to max over the group's prompts)."""
    request = record.requested_rewrite
    groups = [g for g in GROUPS if g in before]
    figure, axes = plt.subplots(1, len(groups), figsize=(3.4 * len(groups), 3.2), constrained_layout=True, sharey=True)
    for ax, group in zip(np.atleast_1d(axes), groups):
        for offset, (label, values) in enumerate((("before", before[group]), ("after", after[group]))):
            for column, (name, colour) in enumerate(((request.target_new, "tab:red"), (request.target_true, "tab:blue"))):
                x = offset + (column - 0.5) * 0.35
                data = values[:, column]
                ax.bar(x, data.mean(), width=0.35, color=colour, alpha=0.85 if offset else 0.45,
                       label=f"p({name!r})" if offset == 0 else None)
                ax.errorbar(x, data.mean(), yerr=[[data.mean() - data.min()], [data.max() - data.mean()]],
                            color="black", capsize=3, linewidth=1)
        ax.set_xticks([0, 1])
        ax.set_xticklabels(["before", "after"])
        ax.set_title(f"{group} ({len(before[group])} prompt{'s' if len(before[group]) > 1 else ''})", fontsize=10)
        ax.set_ylim(0, 1)
    np.atleast_1d(axes)[0].set_ylabel("probability (teacher forced)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    figure.suptitle(f"{request.subject}: {request.target_true!r} -> {request.target_new!r}", fontsize=11)
    return figure


BAR_METRICS = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score",
               "efficacy_generation_em", "paraphrase_generation_em", "neighborhood_generation_em")
"""The bars of :func:`plot_bench`, in order."""


def plot_bench(result: BenchResult) -> Figure:
    """Efficacy, Paraphrase and Neighborhood Scores and their harmonic mean (Score), unedited and
    edited, from a bench run of independent edits (Meng et al. 2022, Table 4's columns), and beside
    them the free-generation exact match of the same prompt groups (ES-gen, PS-gen, NS-gen) where measured."""
    keys = [key for key in BAR_METRICS if key in result.after]
    figure, ax = plt.subplots(figsize=(1.5 + 0.6 * len(keys), 3.4), constrained_layout=True)
    positions = np.arange(len(keys))
    for offset, (label, values, colour) in enumerate((("unedited", result.before, "tab:gray"),
                                                      ("edited", result.after, "tab:blue"))):
        ax.bar(positions + (offset - 0.5) * 0.35, [values.get(key, np.nan) for key in keys], width=0.35,
               color=colour, label=label)
    ax.set_xticks(positions)
    ax.set_xticklabels([short_name(key) for key in keys])
    ax.set_ylabel("score (%)")
    ax.set_ylim(0, 105)
    ax.set_title(f"{result.method} on {result.n_cases} independent edits, layers {result.layers}", fontsize=10)
    ax.legend(fontsize=8)
    return figure
