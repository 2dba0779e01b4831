"""Integrated gradients: closed forms, completeness, and the batched cached path against a naive one."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from captum.attr import IntegratedGradients

import workbench
from workbench import families
from workbench.errors import InvalidRequestError, LayerOutOfRangeError
from workbench.locate.attribution import NeuronAttribution, attribute, integrated_gradients
from workbench.tokens import encode

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {family: workbench.load_model(tiny_model_dirs[family]) for family in ("gpt2", "llama", "gemma3")}


def test_linear_function_has_the_closed_form_attribution():
    weights = torch.tensor([0.5, -2.0, 3.0])
    inputs = torch.tensor([[1.0, 2.0, -1.0], [4.0, 0.0, 2.0]])
    for method in ("gausslegendre", "riemann_right"):
        attributions, delta = integrated_gradients(lambda x: x @ weights + 7.0, inputs, steps=5, method=method)
        torch.testing.assert_close(attributions, inputs * weights)
        torch.testing.assert_close(delta, torch.zeros(2), atol=1e-5, rtol=0)


def test_captum_trapezoid_rule_underweights_by_one_step_and_the_delta_shows_it():
    weights = torch.tensor([1.0, 2.0])
    inputs = torch.tensor([[3.0, 1.0]])
    attributions, delta = integrated_gradients(lambda x: x @ weights, inputs, steps=5, method="riemann_trapezoid")
    torch.testing.assert_close(attributions, inputs * weights * 4 / 5)
    torch.testing.assert_close(delta, torch.tensor([-5.0 / 5]))


def test_quadratic_function_has_the_closed_form_attribution():
    inputs = torch.tensor([[1.0, -2.0, 0.5]])
    attributions, _ = integrated_gradients(lambda x: (x**2).sum(-1), inputs, steps=4)  # Gauss-Legendre
    torch.testing.assert_close(attributions, inputs**2)  # x_i * integral of 2 a x_i da


def test_delta_shrinks_as_steps_grow_on_a_nonlinear_function():
    inputs = torch.tensor([[1.5, -2.0, 0.7]])
    exact = torch.sin(inputs).sum()  # F(x) - F(0)
    deltas = []
    for steps in (4, 16, 64):
        attributions, delta = integrated_gradients(lambda x: torch.sin(x).sum(-1), inputs, steps=steps,
                                                   method="riemann_right")
        assert delta.item() == pytest.approx((attributions.sum() - exact).item(), abs=1e-5)
        deltas.append(abs(delta.item()))
    assert deltas[0] > deltas[1] > deltas[2]


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_attributions_of_a_layer_sum_to_the_output_change_within_the_delta(models, family):
    for method in ("gausslegendre", "riemann_right"):
        result = attribute(models[family], PROMPT, steps=16, method=method)
        gap = result.output - result.baseline_outputs
        np.testing.assert_allclose(result.attributions.sum(1) - gap, result.deltas, atol=1e-7)
        if method == "gausslegendre":  # the first-order Riemann sum is visibly off at 16 steps
            assert np.all(np.abs(result.deltas) <= 0.01 * np.abs(gap) + 1e-9)


def _naive_layer_attribution(model, layer: int, answer_id: int, steps: int) -> torch.Tensor:
    """Reference-style: full prompt every step, one layer at a time, through the bridge's hooks."""
    ids = encode(model, PROMPT)
    hook = families.Hooks.mlp_key(layer)
    _, cache = model.run_with_cache(ids)
    clean = cache[hook][0, -1]

    def forward(scaled):
        def replace(activation, hook=None):
            activation = activation.clone()
            activation[:, -1] = scaled
            return activation

        logits = model.run_with_hooks(ids.expand(len(scaled), -1), return_type="logits", fwd_hooks=[(hook, replace)])
        return logits[:, -1].softmax(-1)[:, answer_id]

    return IntegratedGradients(forward).attribute(clean[None], baselines=torch.zeros_like(clean[None]),
                                                  n_steps=steps, method="gausslegendre")[0]


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_batched_cached_attribution_matches_the_naive_loop(models, family):
    model = models[family]
    result = attribute(model, PROMPT, steps=8, internal_batch_size=6)  # several chunks
    for index, layer in enumerate(result.layers):
        expected = _naive_layer_attribution(model, layer, result.answer_id, steps=8)
        np.testing.assert_allclose(result.attributions[index], expected.detach().numpy(), rtol=1e-3, atol=1e-9)


def test_layers_in_any_order_give_each_layer_the_same_attributions(models):
    """Rows start at their own layer's block, sorted by it inside the pass; the caller's order stays."""
    model = models["llama"]
    ascending = attribute(model, PROMPT, layers=[0, 1], steps=4)
    descending = attribute(model, PROMPT, layers=[1, 0], steps=4)
    assert descending.layers == [1, 0]
    np.testing.assert_allclose(descending.attributions[::-1], ascending.attributions, rtol=1e-5, atol=1e-9)


def test_bfloat16_attribution_stays_near_the_float32_one(models):
    model = models["llama"]
    exact = attribute(model, PROMPT, steps=8)
    reduced = attribute(model, PROMPT, steps=8, dtype="bfloat16")
    assert reduced.settings["dtype"] == "bfloat16" and not np.array_equal(exact.attributions, reduced.attributions)
    scale = np.abs(exact.attributions).max()
    np.testing.assert_allclose(reduced.attributions, exact.attributions, atol=0.05 * scale)


def test_log_prob_target_and_round_trip(models, tmp_path):
    result = attribute(models["gpt2"], PROMPT, target="log_prob", layers=[1], steps=8)
    assert result.layers == [1] and result.attributions.shape == (1, models["gpt2"].cfg.d_mlp)
    assert result.output == pytest.approx(np.log(attribute(models["gpt2"], PROMPT, layers=[1], steps=2).output), rel=1e-5)
    loaded = NeuronAttribution.load(result.save(tmp_path / "ig.json"))
    np.testing.assert_array_equal(loaded.attributions, result.attributions)
    assert len(result.top_neurons(3)) == 3 and result.top_neurons(1)[0][2] == result.attributions.max()


@pytest.mark.parametrize("kwargs, error", [({"target": "logit"}, InvalidRequestError),
                                           ({"layers": [5]}, LayerOutOfRangeError),
                                           ({"steps": 0}, InvalidRequestError),
                                           ({"dtype": "float16"}, InvalidRequestError)])
def test_bad_input(models, kwargs, error):
    with pytest.raises(error):
        attribute(models["gpt2"], PROMPT, **kwargs)
