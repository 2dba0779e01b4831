"""ROME on the bundled fact model: the measured default layer, exact restore after real edits.

Whether the edits take is measured by ``workbench bench`` and reported, not asserted here: on
this model single-position edits at the subject mostly fail (see the ROME notes in the docs).
"""
from __future__ import annotations

import pytest
import torch

import workbench
from workbench import families
from workbench.evaluate.metrics import case_metrics
from workbench.models import hf_state_dict
from workbench.zoo.benchmark import benchmark
from workbench.zoo.records import RECORDS


@pytest.fixture(scope="module")
def model():
    return workbench.load_model()


@pytest.mark.slow  # about 80 s, most of it the second moments over the whole corpus
def test_edits_move_the_target_and_are_undone_bit_exactly(model):
    weights = {name: tensor.clone() for name, tensor in hf_state_dict(model).items()}
    records = benchmark("factgpt", 3)
    layer = workbench.edit.layers.default_edit_layer(model, RECORDS["factgpt"].known_facts(48))
    before = case_metrics(model, records)
    for record, unedited in zip(records, before):
        with workbench.edit(model, record, layer=layer) as result:
            (edited,) = case_metrics(model, [record])
            assert set(result.deltas) == {families.mlp_out_projection(model, layer).name}
        # the edit pushes p(new) - p(true) up on the rewrite prompt, even where it does not flip it
        assert edited["efficacy_magnitude"] > unedited["efficacy_magnitude"]
    assert all(torch.equal(tensor, weights[name]) for name, tensor in hf_state_dict(model).items())


def test_default_layer_is_measured_and_inside_the_model(model):
    layer = workbench.edit.layers.default_edit_layer(model, RECORDS["factgpt"].known_facts(48))
    assert 0 <= layer < model.cfg.n_layers
