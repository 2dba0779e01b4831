"""A scoped memory is given only for the model, tokenizer and (where pinned) weights it was opened on."""
from __future__ import annotations

import copy

import pytest
import torch

import workbench
from workbench.edit.scoped import ScopedMemory


@pytest.fixture
def two_models(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["llama"]), workbench.load_model(tiny_model_dirs["llama"])


@pytest.mark.parametrize("pinned", [True, False])
def test_a_memory_holds_for_its_model_tokenizer_and_pinned_weights_only(two_models, pinned):
    model, twin = two_models
    memory = ScopedMemory("test_memory", pinned_weights=pinned)
    weight = next(model.original_model.parameters())
    kept = weight.detach().clone()
    assert memory.of(model) is None  # no block open
    with memory.holding(model, {"kept": 1}) as held:
        assert memory.of(model) is held
        assert memory.of(twin) is None  # the same weights in another model
        with torch.no_grad():
            weight.add_(1.0)
        assert (memory.of(model) is None) == pinned  # changed weights end a pinned memory only
        with torch.no_grad():
            weight.copy_(kept)
        assert memory.of(model) is held  # the weights it began with again
        tokenizer = model.tokenizer
        model.tokenizer = copy.copy(tokenizer)
        assert memory.of(model) is None  # another tokenizer (another prompt prefix)
        model.tokenizer = tokenizer
        with memory.holding(model, {"inner": 2}) as inner:
            assert memory.of(model) is inner  # the innermost block holds
        assert memory.of(model) is held
    assert memory.of(model) is None
