"""Dai et al.'s intervention analysis over many facts: do a fact's knowledge neurons matter for
that fact more than for unrelated facts? (Dai et al. 2022, section 4.3, Figure 3.)

For each fact: find its knowledge neurons from its paraphrase prompts, then suppress (x0) and
amplify (x2) them and measure the mean relative change of p(answer) on the fact's prompts and on
prompts of unrelated facts (other relations, with their own answers).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench.locate.neurons import KnowledgeNeurons, intervention_effect, knowledge_neurons
from workbench.results import JsonResult


@dataclass(repr=False)
class InterventionStudy(JsonResult):
    """Mean relative change of p(answer) under suppression and amplification, related vs unrelated."""

    n_facts: int
    suppress_related: float
    suppress_unrelated: float
    amplify_related: float
    amplify_unrelated: float
    neurons_per_fact: float
    facts_without_neurons: int
    layer_counts: list
    """Knowledge neurons found in each layer, over all facts."""
    settings: dict = field(default_factory=dict)


def intervention_study(
    model: TransformerBridge,
    facts: Sequence[tuple[Sequence[str], str]],
    unrelated: Sequence[Sequence[tuple[str, str]]],
    *,
    threshold: float = 0.2,
    share: float = 0.5,
    steps: int = 20,
    progress: bool = True,
) -> InterventionStudy:
    """Run the analysis.

    Args:
        facts: per fact, its paraphrase prompts and its answer.
        unrelated: per fact, (prompt, answer) pairs of facts the neurons should not matter for.
    """
    results = {key: [] for key in ("suppress_related", "suppress_unrelated", "amplify_related", "amplify_unrelated")}
    counts = np.zeros(model.cfg.n_layers, dtype=int)
    sizes, empty = [], 0
    for (prompts, answer), others in tqdm(list(zip(facts, unrelated)), desc="knowledge neurons", disable=not progress):
        found: KnowledgeNeurons = knowledge_neurons(model, prompts, answer, threshold=threshold, share=share, steps=steps)
        sizes.append(len(found.neurons))
        if not found.neurons:
            empty += 1
            continue
        counts += found.by_layer(model.cfg.n_layers)
        other_prompts, other_answers = [p for p, _ in others], [a for _, a in others]
        for mode, scale in (("suppress", 0.0), ("amplify", 2.0)):
            results[f"{mode}_related"].append(intervention_effect(model, found.neurons, prompts, [answer] * len(prompts), scale).mean())
            results[f"{mode}_unrelated"].append(intervention_effect(model, found.neurons, other_prompts, other_answers, scale).mean())
    return InterventionStudy(
        n_facts=len(facts),
        **{key: float(np.mean(values)) if values else float("nan") for key, values in results.items()},
        neurons_per_fact=float(np.mean(sizes)),
        facts_without_neurons=empty,
        layer_counts=counts.tolist(),
        settings={"threshold": threshold, "share": share, "steps": steps},
    )
