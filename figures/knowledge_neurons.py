"""Regenerate the attribution figures of the bundled fact model.

    python figures/knowledge_neurons.py [--facts 100]

Writes, under figures/:
  ig_neuron_attribution.png       IG attribution of one fact over every layer's FFN neurons
  token_attribution.png           IG attribution to input tokens and per layer/position
  knowledge_neuron_layers.png     where the knowledge neurons of many facts sit, by layer
  knowledge_neuron_interventions.png / .json
                                  suppressing / amplifying them: the fact vs unrelated facts
  memory_top_neuron.png           the value of the fact's top neuron read as tokens
Deterministic: fixed facts.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.locate.attribution import attribute  # noqa: E402
from workbench.locate.kn_analysis import intervention_study  # noqa: E402
from workbench.locate.memories import memory  # noqa: E402
from workbench.locate.token_attribution import token_attribution  # noqa: E402
from workbench.plot.attribution import plot_layer_counts, plot_memory  # noqa: E402
from workbench.zoo.knowledge import load_facts  # noqa: E402
from workbench.zoo.records import RECORDS  # noqa: E402
from workbench.zoo.relations import RELATIONS  # noqa: E402

HERE = Path(__file__).parent
PROMPT, ANSWER = "The capital of Burkina Faso is", "Ouagadougou"


def study_inputs(n_facts: int, seed: int = 0):
    """``n_facts`` facts (paraphrases, answer) and, for each, 5 facts of other relations."""
    facts = load_facts()
    rng = random.Random(seed)
    chosen = rng.sample(facts, n_facts)
    inputs, unrelated = [], []
    for fact in chosen:
        relation = RELATIONS[fact.relation_id]
        inputs.append(([t.format(fact.subject) for t in relation.templates], fact.object))
        others = rng.sample([f for f in facts if f.relation_id != fact.relation_id], 5)
        unrelated.append([(RELATIONS[o.relation_id].prompt(o.subject), o.object) for o in others])
    return inputs, unrelated


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the attribution figures.")
    parser.add_argument("--facts", type=int, default=100)
    args = parser.parse_args()
    model = workbench.load_model()
    result = attribute(model, PROMPT, ANSWER)
    result.plot().savefig(HERE / "ig_neuron_attribution.png", dpi=120)
    token_attribution(model, PROMPT, ANSWER).plot().savefig(HERE / "token_attribution.png", dpi=120)
    layer, neuron, _ = result.top_neurons(1)[0]
    corpus = RECORDS["factgpt"].corpus_texts()
    plot_memory(memory(model, layer, neuron, corpus=corpus)).savefig(HERE / "memory_top_neuron.png", dpi=120)
    study = intervention_study(model, *study_inputs(args.facts))
    study.save(HERE / "knowledge_neuron_interventions.json")
    study.plot().savefig(HERE / "knowledge_neuron_interventions.png", dpi=120)
    plot_layer_counts(study.layer_counts, study.n_facts).savefig(HERE / "knowledge_neuron_layers.png", dpi=120)
    print(f"suppress: related {study.suppress_related:+.1%}, unrelated {study.suppress_unrelated:+.1%}; "
          f"amplify: related {study.amplify_related:+.1%}, unrelated {study.amplify_unrelated:+.1%}")
    print(f"figures written to {HERE.resolve()}")


if __name__ == "__main__":
    main()
