"""ROME on the real model: known facts are rewritten, their neighbours keep their answers, and the
weights come back bit-exactly. The truth is the benchmark's construction: the unedited model
answers every rewrite prompt and neighbour with ``target_true`` (measured when the record was built)."""
from __future__ import annotations

import pytest
import torch

import workbench
from workbench.probabilities import score_targets
from workbench.models import hf_state_dict
from workbench.zoo.records import RECORDS

pytestmark = pytest.mark.slow  # about a minute: model conversion (first time), statistics, three edits


@pytest.fixture(scope="module")
def model():
    return workbench.load_model("smollm2-135m")


def _prefers_new(model, prompts, request) -> list[bool]:
    both = score_targets(model, prompts + prompts, [request.target_new] * len(prompts) + [request.target_true] * len(prompts))
    new, true = both.log_prob.view(2, len(prompts))
    return (new > true).tolist()


def test_known_facts_are_rewritten_and_neighbours_kept(model):
    weights = {name: tensor.clone() for name, tensor in hf_state_dict(model).items()}
    cases = RECORDS["smollm2-135m"].benchmark(3, split="evaluation")
    for case in cases:
        request = case.requested_rewrite
        assert _prefers_new(model, [request.filled_prompt()], request) == [False]
        with workbench.edit(model, case):
            assert _prefers_new(model, [request.filled_prompt()], request) == [True]
            neighbours = _prefers_new(model, list(case.neighborhood_prompts), request)
            assert sum(neighbours) <= len(neighbours) // 4  # at most a quarter of the neighbours move
    assert all(torch.equal(tensor, weights[name]) for name, tensor in hf_state_dict(model).items())
