"""Regenerate the causal-tracing figures of the bundled fact model.

    python figures/causal_tracing.py [--facts 200] [--samples 10]

Writes, under figures/:
  causal_trace_burkina_faso.png     three-panel trace of one fact (hidden, MLP, attention)
  causal_trace_severed.png          hidden-state trace with the MLPs severed
  average_indirect_effect.png       ROME Figure 2-style curves over many facts
  average_indirect_effect.json      the data behind it, with the recommended edit layer
Deterministic: fixed facts, fixed seeds.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.locate.effects import trace_many  # noqa: E402
from workbench.locate.tracing import trace, trace_kinds  # noqa: E402
from workbench.plot import plot_trace, plot_trace_panels  # noqa: E402
from workbench.zoo.knowledge import facts_by_relation, load_facts  # noqa: E402
from workbench.zoo.relations import RELATIONS  # noqa: E402

HERE = Path(__file__).parent
PROMPT, SUBJECT = "The capital of Burkina Faso is", "Burkina Faso"


def fact_prompts(n_facts: int) -> list[tuple[str, str, str]]:
    """The first ``n_facts`` facts, taken round-robin over relations, with their canonical prompts."""
    by_relation = list(facts_by_relation(load_facts()).values())
    chosen = []
    for i in range(max(map(len, by_relation))):
        chosen += [facts[i] for facts in by_relation if i < len(facts)]
    return [(RELATIONS[f.relation_id].prompt(f.subject), f.subject, f.object) for f in chosen[:n_facts]]


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the causal-tracing figures.")
    parser.add_argument("--facts", type=int, default=200)
    parser.add_argument("--samples", type=int, default=10)
    args = parser.parse_args()
    model = workbench.load_model()
    window = 3  # of 6 layers; ROME's 10 is for 48-layer GPT-2 XL
    traces = trace_kinds(model, PROMPT, SUBJECT, window=window, samples=args.samples)
    plot_trace_panels(traces).savefig(HERE / "causal_trace_burkina_faso.png", dpi=120)
    severed = trace(model, PROMPT, SUBJECT, severed="mlp", samples=args.samples)
    plot_trace(severed).savefig(HERE / "causal_trace_severed.png", dpi=120)
    effect = trace_many(model, fact_prompts(args.facts), samples=args.samples, window=window)
    effect.save(HERE / "average_indirect_effect.json")
    effect.plot().savefig(HERE / "average_indirect_effect.png", dpi=120)
    print(f"recommended edit layer {effect.recommend_layer()}, MEMIT range {effect.recommend_layers(3)}")
    print(f"figures written to {HERE.resolve()}")


if __name__ == "__main__":
    main()
