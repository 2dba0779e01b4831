"""Knowledge-neuron refinement (closed cases), interventions, and memories against direct reads."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench
from workbench import families
from workbench.errors import InvalidRequestError
from workbench.locate import neurons as neurons_module
from workbench.locate.attribution import NeuronAttribution
from workbench.locate.memories import memory
from workbench.locate.neurons import KnowledgeNeurons, answer_probabilities, intervention_effect, knowledge_neurons
from workbench.tokens import encode


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["gpt2"])


def _fake_attribution(prompt: str, peaks: dict[tuple[int, int], float]) -> NeuronAttribution:
    values = np.zeros((2, 8), dtype=np.float32)
    for (layer, neuron), value in peaks.items():
        values[layer, neuron] = value
    return NeuronAttribution(prompt, " x", 0, "prob", [0, 1], values, values, np.zeros(2), 0.5, np.zeros(2))


def test_refinement_keeps_neurons_shared_by_enough_prompts(model, monkeypatch):
    # per prompt, neurons above 0.2 x max: p1 {(0,1),(1,2)}, p2 {(0,1),(1,3)}, p3 {(0,1),(1,2)}
    table = {
        "p1": {(0, 1): 1.0, (1, 2): 0.5, (1, 5): 0.1},
        "p2": {(0, 1): 2.0, (1, 3): 0.9, (1, 2): 0.3},
        "p3": {(0, 1): 1.0, (1, 2): 0.25},
        "n1": {(1, 2): 1.0},
        "n2": {(1, 2): 1.0, (0, 1): 0.1},
    }
    monkeypatch.setattr(neurons_module, "attribute",
                        lambda model, prompt, answer=None, steps=20, layers=None, dtype="float32":
                        _fake_attribution(prompt, table[prompt]))
    found = knowledge_neurons(model, ["p1", "p2", "p3"], "x", threshold=0.2, share=0.5)
    assert found.per_prompt[1] == [[0, 1], [1, 3]]
    assert found.neurons == [[0, 1], [1, 2]]  # (1,2) in p1 and p3 only: 2/3 > 0.5; (1,3) 1/3
    strict = knowledge_neurons(model, ["p1", "p2", "p3"], "x", threshold=0.2, share=0.7)
    assert strict.neurons == [[0, 1]]
    refined = knowledge_neurons(model, ["p1", "p2", "p3"], "x", negative_prompts=["n1", "n2"])
    assert refined.neurons == [[0, 1]]  # (1, 2) is salient for both unrelated prompts
    assert list(refined.by_layer(2)) == [1, 0]


def test_only_the_given_layers_are_searched(model):
    prompts = ["The capital of France is", "France's capital is"]
    everywhere = knowledge_neurons(model, prompts, "Paris", threshold=0.05, share=0.0)
    upper = knowledge_neurons(model, prompts, "Paris", threshold=0.05, share=0.0, layers=[1])
    assert {layer for found in upper.per_prompt for layer, _ in found} == {1}
    assert {layer for found in everywhere.per_prompt for layer, _ in found} == {0, 1}  # the restriction matters
    assert upper.settings["layers"] == [1]


def test_bad_thresholds(model):
    with pytest.raises(InvalidRequestError):
        knowledge_neurons(model, ["a"], "x", threshold=0)
    with pytest.raises(InvalidRequestError):
        knowledge_neurons(model, [], "x")


def test_interventions_scale_the_activations(model):
    prompts, answers = ["The capital of France is"], ["Paris"]
    plain = answer_probabilities(model, prompts, answers)
    assert np.array_equal(answer_probabilities(model, prompts, answers, [[0, 3]], 1.0), plain)
    # independent check of suppression: zero the neuron by hand
    ids = encode(model, prompts[0])

    def zero(activation, hook):
        activation[:, -1, 3] = 0
        return activation

    with torch.no_grad():
        logits = model.run_with_hooks(ids, return_type="logits", fwd_hooks=[(families.Hooks.mlp_key(0), zero)])
    answer = model.tokenizer(" Paris", add_special_tokens=False)["input_ids"][0]
    expected = logits[0, -1].softmax(-1)[answer].item()
    assert answer_probabilities(model, prompts, answers, [[0, 3]], 0.0)[0] == pytest.approx(expected, rel=1e-6)
    effect = intervention_effect(model, [[0, 3]], prompts, answers, 0.0)
    assert effect[0] == pytest.approx((expected - plain[0]) / plain[0], rel=1e-5)


def test_prompts_of_different_lengths_in_one_pass_equal_each_alone(model):
    prompts = ["The capital of France is", "Rome is the capital of", "The capital city of the country of Peru is"]
    answers = ["Paris", "Italy", "Lima"]
    for neurons, scale in (((), 1.0), ([[0, 3], [1, 7]], 0.0), ([[1, 7]], 2.0)):
        together = answer_probabilities(model, prompts, answers, neurons, scale)
        alone = [answer_probabilities(model, [p], [a], neurons, scale)[0] for p, a in zip(prompts, answers)]
        np.testing.assert_allclose(together, alone, rtol=1e-5)


def test_memory_reads_key_value_and_vocabulary_directly(model):
    """GPT-2 layout (Conv1D); the Llama layout is checked in test_memory_of_a_gated_mlp."""
    corpus = ["The capital of France is Paris", "Rome is the capital of Italy", "Paris", "Lima is in Peru and Peru is in South America"]
    found = memory(model, 1, 5, k=3, corpus=corpus, batch_size=2)
    projection = families.mlp_out_projection(model, 1)
    value = projection.weight[5].detach()  # Conv1D [d_mlp, d_model]: row 5 is neuron 5's value
    np.testing.assert_allclose(found.value, value.numpy(), rtol=1e-6)
    key = families.mlp_in_projections(model, 1)[0].weight[:, 5].detach()  # Conv1D [d_model, d_mlp]
    np.testing.assert_allclose(next(iter(found.keys.values())), key.numpy(), rtol=1e-6)
    logits = families.unembedding(model).weight.detach() @ value
    assert found.promoted[0][0] == model.tokenizer.decode([int(logits.argmax())])
    assert found.suppressed[0][0] == model.tokenizer.decode([int(logits.argmin())])
    # each text alone, every token but the special ones (the BOS every text starts with)
    special = set(model.tokenizer.all_special_ids)
    expected = []
    for text in corpus:
        ids = model.tokenizer(text)["input_ids"]
        _, cache = model.run_with_cache(torch.tensor([ids]))
        activations = cache[families.Hooks.mlp_key(1)][0, :, 5]
        counted = [position for position, token in enumerate(ids) if token not in special]
        best = max(counted, key=lambda position: activations[position].item())
        expected.append((activations[best].item(), text, model.tokenizer.decode([ids[best]])))
    expected = sorted(expected, reverse=True)[:3]
    assert [(text, token) for text, token, _ in found.top_prompts] == [(text, token) for _, text, token in expected]
    np.testing.assert_allclose([a for _, _, a in found.top_prompts], [a for a, _, _ in expected], rtol=1e-5)


def test_knowledge_neurons_round_trip(tmp_path):
    found = KnowledgeNeurons(["a"], "x", [[0, 1]], [[[0, 1]]], {"threshold": 0.2})
    assert KnowledgeNeurons.load(found.save(tmp_path / "kn.json")) == found


def test_memory_of_a_gated_mlp(tiny_model_dirs):
    llama = workbench.load_model(tiny_model_dirs["llama"])
    found = memory(llama, 0, 2, k=2, corpus=[])
    gate, up = families.mlp_in_projections(llama, 0)
    assert set(found.keys) == {gate.name, up.name}
    np.testing.assert_allclose(found.keys[up.name], up.weight[2].detach().numpy())  # Linear [d_mlp, d_model]
    down = families.mlp_out_projection(llama, 0)
    np.testing.assert_allclose(found.value, down.weight[:, 2].detach().numpy())
    assert found.top_prompts == []
