"""Locating facts in the bundled fact model, whose facts are known."""
from __future__ import annotations

import numpy as np
import pytest

import workbench
from workbench.locate.attribution import attribute
from workbench.locate.neurons import intervention_effect, knowledge_neurons
from workbench.locate.patching import activation_patching, attribution_patching, patching_agreement
from workbench.locate.tracing import trace
from workbench.tokens import encode
from workbench.zoo.knowledge import load_facts
from workbench.zoo.relations import RELATIONS

FACTS = [("The capital of Burkina Faso is", "Burkina Faso", "Ouagadougou"),
         ("The official language of Brazil is", "Brazil", "Portuguese")]


@pytest.fixture(scope="module")
def model():
    return workbench.load_model()


@pytest.mark.parametrize("prompt, subject, answer", FACTS)
def test_corrupting_the_subject_destroys_the_answer_and_restoring_brings_it_back(model, prompt, subject, answer):
    result = trace(model, prompt, subject, answer=answer)
    assert result.clean_prob > 0.5
    assert result.corrupted_prob < 0.5 * result.clean_prob
    gap = result.clean_prob - result.corrupted_prob
    # restoring the subject's tokens at the first layer brings back part of the answer (in this
    # model mostly at the most distinctive subject token, not always the last one), and restoring
    # the last token at the last layer all of it
    assert result.indirect_effect[result.subject_start : result.subject_end, 0].max() > 0.25 * gap
    assert result.indirect_effect[-1, -1] == pytest.approx(gap, rel=1e-3)


def test_attribution_and_activation_patching_agree(model):
    clean = "The capital of Burkina Faso is"
    length = encode(model, clean).shape[1]
    corrupted = next(
        prompt for prompt in (RELATIONS["P36"].prompt(f.subject) for f in load_facts() if f.relation_id == "P36")
        if prompt != clean and encode(model, prompt).shape[1] == length
    )
    measured = activation_patching(model, clean, corrupted, kind="mlp")
    estimated = attribution_patching(model, clean, corrupted, kinds=["mlp"])["mlp"]
    assert patching_agreement(measured, estimated) > 0.5


def test_knowledge_neurons_matter_more_for_their_fact(model):
    paraphrases = [t.format("Burkina Faso") for t in RELATIONS["P36"].templates]
    found = knowledge_neurons(model, paraphrases, "Ouagadougou")
    assert found.neurons
    related = intervention_effect(model, found.neurons, paraphrases, ["Ouagadougou"] * len(paraphrases), 0.0)
    unrelated = intervention_effect(model, found.neurons, ["The chemical symbol for Oxygen is", "Lyon is a city in"],
                                    ["O", "France"], 0.0)
    # one fact at p ~ 1 moves little; the 100-fact average is in figures/knowledge_neuron_interventions.json
    assert related.mean() < 0 and related.mean() < unrelated.mean()


def test_ig_completeness_on_the_trained_model(model):
    result = attribute(model, "The capital of Burkina Faso is", "Ouagadougou", steps=20)
    gap = result.output - result.baseline_outputs
    assert np.all(np.abs(result.deltas) <= 0.05 * np.abs(gap) + 1e-4)
