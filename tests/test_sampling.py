"""Batched top-k sampling: a prompt continues the same in a padded batch as alone."""
from __future__ import annotations

import pytest
import torch

import workbench
from workbench.sampling import sample_top_k


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {family: workbench.load_model(tiny_model_dirs[family]) for family in ("gpt2", "llama")}


def _greedy_alone(model, prompt, n):
    """The truth: argmax continuation by whole forward passes, no cache, no padding."""
    ids = torch.tensor([prompt])
    for _ in range(n):
        ids = torch.cat([ids, model(ids, return_type="logits")[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[0, len(prompt):].tolist()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_greedy_batch_of_different_lengths_matches_each_prompt_alone(models, family):
    model = models[family]
    prompts = [[5, 9, 13, 2, 7, 11, 4], [3], [8, 1, 12]]
    batched = sample_top_k(model, prompts, 6, top_k=1, generator=torch.Generator().manual_seed(0))
    assert batched.shape == (3, 6)
    for prompt, row in zip(prompts, batched.tolist()):
        assert row == _greedy_alone(model, prompt, 6)


def test_sampling_stays_in_the_top_k_and_is_seeded(models):
    model = models["gpt2"]
    prompt = [5, 9, 13]
    first = sample_top_k(model, [prompt] * 8, 1, top_k=3, generator=torch.Generator().manual_seed(1))
    allowed = set(model(torch.tensor([prompt]), return_type="logits")[0, -1].topk(3).indices.tolist())
    assert set(first[:, 0].tolist()) <= allowed
    again = sample_top_k(model, [prompt] * 8, 1, top_k=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    with pytest.raises(ValueError, match="at least one token"):
        sample_top_k(model, [[]], 2, generator=torch.Generator())
