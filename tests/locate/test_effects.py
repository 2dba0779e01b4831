"""Token roles, averaging and the layer recommendation."""
from __future__ import annotations

import numpy as np
import pytest

import workbench
from workbench.errors import InvalidRequestError
from workbench.locate.effects import ROLES, AverageIndirectEffect, token_roles, trace_many


@pytest.mark.parametrize(
    "n, start, end, expected",
    [
        # BOS The capital of [Fr an ce] is
        (8, 4, 7, [None, None, None, None, 0, 1, 2, 5]),
        # BOS [A] b c d: one-token subject is the last subject token; b first subsequent; c further
        (5, 1, 2, [None, 2, 3, 4, 5]),
        # BOS [A B] is
        (4, 1, 3, [None, 0, 2, 5]),
    ],
)
def test_token_roles(n, start, end, expected):
    assert token_roles(n, start, end) == expected


def _effect(curve: list[float]) -> AverageIndirectEffect:
    mlp = np.zeros((len(ROLES), len(curve)))
    mlp[2] = curve
    return AverageIndirectEffect(["mlp"], list(ROLES), {"mlp": mlp}, {"mlp": [1] * 6}, 1, 0.9, 0.1)


def test_recommendation_is_the_peak_of_the_mlp_curve_at_the_last_subject_token():
    effect = _effect([0.0, 0.1, 0.5, 0.2, 0.4, 0.3])
    assert effect.recommend_layer() == 2
    assert effect.recommend_layers(3) == [2, 3, 4]  # 1.1 beats 0.8 (1..3) and 0.9 (3..5)
    with pytest.raises(InvalidRequestError):
        effect.recommend_layers(7)


def test_trace_many_averages_and_saves(tiny_model_dirs, tmp_path):
    model = workbench.load_model(tiny_model_dirs["gpt2"])
    prompts = [("The capital of France is", "France"), ("Rome is the capital of Italy", "Rome")]
    effect = trace_many(model, prompts, kinds=["mlp", "hidden"], samples=2, progress=False)
    assert effect.n_facts == 2 and effect.effects["mlp"].shape == (6, 2)
    assert effect.counts["mlp"][ROLES.index("last subject token")] == 2
    assert effect.counts["mlp"][ROLES.index("middle subject tokens")] >= 1
    loaded = AverageIndirectEffect.load(effect.save(tmp_path / "aie.json"))
    np.testing.assert_array_equal(loaded.effects["mlp"], effect.effects["mlp"])
    assert loaded.recommend_layer() == effect.recommend_layer()
