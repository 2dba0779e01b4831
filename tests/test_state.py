"""Per-model state: kept on each model, never shared between two models, released with the model."""
from __future__ import annotations

import gc
import weakref

import torch

import workbench
from workbench.edit.stats import pinned_statistics, statistics_fingerprint, weights_fingerprint
from workbench.state import ModelState, state_of


def test_two_models_in_one_process_keep_their_own_state(tiny_model_dirs):
    first = workbench.load_model(tiny_model_dirs["llama"])
    second = workbench.load_model(tiny_model_dirs["llama"])
    assert state_of(first) is state_of(first) and state_of(first) is not state_of(second)
    with pinned_statistics(first) as pinned:
        assert state_of(first).pinned_fingerprint == pinned
        assert state_of(second).pinned_fingerprint is None
        with torch.no_grad():
            for parameter in second.original_model.parameters():
                parameter.add_(1.0)  # the second model's weights change; the first stays pinned
                break
        assert statistics_fingerprint(first) == pinned
        assert statistics_fingerprint(second) == weights_fingerprint(second) != pinned
    assert state_of(first).pinned_fingerprint is None  # the pin ends with its block


def test_state_is_released_with_its_model(tiny_model_dirs):
    model = workbench.load_model(tiny_model_dirs["gpt2"])
    state = weakref.ref(state_of(model))
    assert isinstance(state(), ModelState)
    del model
    gc.collect()
    assert state() is None

