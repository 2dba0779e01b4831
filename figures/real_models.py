"""Locate figures of a real bundled model from its calibrated settings: where its facts live.

    python figures/real_models.py --model gemma3-270m [--facts 24] [--neuron-facts 12]

Writes, under figures/ (``<m>`` the model's name):
  aie_<m>.png / .json        average indirect effect by token role (ROME Figure 2: hidden state,
                             MLP and attention, window 10, 3 noise samples) over known facts
  kn_interventions_<m>.png / .json
                             knowledge neurons (Dai et al. 2022) of each fact, suppressed (x0) and
                             amplified (x2): the fact's own prompts against unrelated facts' prompts
The facts are the model's known facts (from its record: calibrated, or bundled), spread over relations.
Deterministic: fixed facts, fixed seeds.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import workbench  # noqa: E402
from workbench.edit.layers import tracing_window  # noqa: E402
from workbench.locate.effects import trace_many  # noqa: E402
from workbench.locate.kn_analysis import intervention_study  # noqa: E402
from workbench.models import record_of  # noqa: E402
from workbench.plot.tracing import plot_average_effect  # noqa: E402

HERE = Path(__file__).parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--facts", type=int, default=24, help="known facts in the average indirect effect")
    parser.add_argument("--neuron-facts", type=int, default=12, help="facts in the knowledge-neuron study")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    record = record_of(model)
    facts = record.known_facts(args.facts)
    effect = trace_many(model, facts, samples=3, window=tracing_window(model))
    effect.save(HERE / f"aie_{args.model}.json")
    plot_average_effect(effect).savefig(HERE / f"aie_{args.model}.png", dpi=120, bbox_inches="tight")
    print(f"AIE over {effect.n_facts} facts: MLP peak at the last subject token: layer {effect.recommend_layer()}")

    relations = record.relations()
    chosen = [f for f in record.facts()][:: max(1, len(record.facts()) // args.neuron_facts)][: args.neuron_facts]
    studied = [([t.format(f.subject) for t in relations[f.relation_id].templates], f.object) for f in chosen]
    unrelated = [[(relations[o.relation_id].prompt(o.subject), o.object) for o in chosen
                  if o.relation_id != f.relation_id][:4] for f in chosen]
    study = intervention_study(model, studied, unrelated)
    study.save(HERE / f"kn_interventions_{args.model}.json")
    study.plot().savefig(HERE / f"kn_interventions_{args.model}.png", dpi=120, bbox_inches="tight")
    print(json.dumps({k: getattr(study, k) for k in ("suppress_related", "suppress_unrelated", "amplify_related",
                                                     "amplify_unrelated", "neurons_per_fact", "facts_without_neurons")}))


if __name__ == "__main__":
    main()
