"""ROME on the bundled fact model, whose facts are known: edits take, neighbours hold, restore is exact."""
from __future__ import annotations

import pytest
import torch

import workbench
from workbench.evaluate.metrics import case_metrics
from workbench.models import hf_state_dict
from workbench.zoo.benchmark import benchmark


@pytest.fixture(scope="module")
def model():
    return workbench.load_model()


def test_edits_take_and_are_undone_bit_exactly(model):
    weights = {name: tensor.clone() for name, tensor in hf_state_dict(model).items()}
    records = benchmark(5)
    layer = workbench.edit.layers.default_edit_layer(model)
    for record in records:
        with workbench.edit(model, record, layer=layer):
            (metrics,) = case_metrics(model, [record])
        assert metrics["efficacy_score"] == 100.0
        assert metrics["paraphrase_score"] >= 50.0
    assert all(torch.equal(tensor, weights[name]) for name, tensor in hf_state_dict(model).items())


def test_default_layer_is_measured_and_inside_the_model(model):
    layer = workbench.edit.layers.default_edit_layer(model)
    assert 0 <= layer < model.cfg.n_layers
