"""Activation patching against exact restorations, attribution patching against finite differences."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench
from workbench.errors import InvalidRequestError
from workbench.locate.patching import PatchingResult, activation_patching, attribution_patching, patching_agreement
from workbench.tokens import encode

CLEAN, CORRUPTED = "The capital of France is", "The capital of Frence is"
ANSWERS = {"answer": "capital", "corrupted_answer": "of"}


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["gpt2"])


def test_patching_the_last_hidden_state_restores_the_clean_metric(model):
    result = activation_patching(model, CLEAN, CORRUPTED, **ANSWERS)
    assert result.effects[-1, -1] == pytest.approx(result.clean_metric - result.corrupted_metric, rel=1e-4, abs=1e-6)
    # positions before the first differing token carry identical activations: no effect
    np.testing.assert_allclose(result.effects[:5], 0.0, atol=1e-6)


def test_attribution_matches_a_finite_difference_of_the_metric(model):
    """(a_clean - a_corr) . grad is the derivative of the metric along the patch direction."""
    kind, token, layer = "mlp", 5, 0
    estimate = attribution_patching(model, CLEAN, CORRUPTED, kinds=[kind], **ANSWERS)[kind].effects[token, layer]
    hook_name = f"blocks.{layer}.hook_mlp_out"
    _, clean_cache = model.run_with_cache(encode(model, CLEAN))
    _, corrupted_cache = model.run_with_cache(encode(model, CORRUPTED))
    direction = clean_cache[hook_name][0, token] - corrupted_cache[hook_name][0, token]
    answer = model.tokenizer(" capital", add_special_tokens=False)["input_ids"][0]
    other = model.tokenizer(" of", add_special_tokens=False)["input_ids"][0]

    def metric(step: float) -> float:
        def nudge(activation, hook):
            activation[:, token] = corrupted_cache[hook_name][0, token] + step * direction
            return activation

        with torch.no_grad():
            logits = model.run_with_hooks(encode(model, CORRUPTED), return_type="logits", fwd_hooks=[(hook_name, nudge)])
        return (logits[0, -1, answer] - logits[0, -1, other]).double().item()

    eps = 1e-2
    numerical = (metric(eps) - metric(-eps)) / (2 * eps)
    assert estimate == pytest.approx(numerical, rel=1e-2, abs=1e-5)


def test_attribution_agrees_with_activation_patching(model):
    measured = activation_patching(model, CLEAN, CORRUPTED, kind="mlp", **ANSWERS)
    estimated = attribution_patching(model, CLEAN, CORRUPTED, kinds=["mlp"], **ANSWERS)["mlp"]
    assert patching_agreement(measured, estimated) > 0.5


def test_round_trip(model, tmp_path):
    result = activation_patching(model, CLEAN, CORRUPTED, kind="attn", **ANSWERS)
    loaded = PatchingResult.load(result.save(tmp_path / "patch.json"))
    np.testing.assert_array_equal(loaded.effects, result.effects)
    assert loaded.kind == "attn" and loaded.method == "activation"


def test_prompts_of_different_length_are_refused(model):
    with pytest.raises(InvalidRequestError, match="equal token length"):
        activation_patching(model, CLEAN, "The capital of Spain is", **ANSWERS)


def test_same_answer_is_refused(model):
    with pytest.raises(InvalidRequestError, match="same answer"):
        attribution_patching(model, CLEAN, CORRUPTED, answer="of", corrupted_answer="of")
