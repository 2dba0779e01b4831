"""Rows cut at the edit position give the logits and gradients of the whole rows, in every family."""
from __future__ import annotations

import pytest
import torch

import workbench
from workbench import families
from workbench.edit.cut_rows import cut_rows, keep_prefixes
from workbench.tokens import pad_right

from conftest import FAMILIES

# rows of different lengths, cut at different places (one at position 0: nothing before it)
ROWS = [[5, 9, 13, 2, 7, 11], [3, 8, 1], [4, 4, 6, 10, 12, 14, 3, 2], [6, 1, 9, 9]]
CUTS = [2, 0, 5, 1]


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {family: workbench.load_model(tiny_model_dirs[family]) for family in FAMILIES}


def _whole_rows(model, hook_name, vector):
    """Logits of the whole right-padded rows with ``vector[r]`` added at each row's cut: the truth."""
    rows = torch.arange(len(ROWS))

    def add(activation, hook=None):
        activation[rows, torch.tensor(CUTS)] += vector.to(activation.dtype)
        return activation

    return model.run_with_hooks(pad_right(ROWS, model.tokenizer.pad_token_id), return_type="logits",
                                fwd_hooks=[(hook_name, add)])


@pytest.mark.parametrize("family", FAMILIES)
def test_cut_rows_reproduce_whole_rows_logits_and_gradients(models, family):
    model = models[family]
    hook_name = families.Hooks.mlp_out(0)
    torch.manual_seed(0)
    base = torch.randn(len(ROWS), model.cfg.d_model)
    cut = cut_rows(model, ROWS, CUTS)
    # predict every position from the cut on, checked against the whole rows' logits there
    wanted = [(r, p) for r, row in enumerate(ROWS) for p in range(CUTS[r], len(row))]
    predict = torch.zeros_like(cut.input_ids, dtype=torch.bool)
    for r, p in wanted:
        predict[r, cut.index_of(r, p)] = True

    gradients = []
    for whole in (True, False):
        vector = base.clone().requires_grad_(True)
        if whole:
            full = _whole_rows(model, hook_name, vector)
            logits = torch.stack([full[r, p] for r, p in wanted])
        else:
            def add(activation, hook=None):
                activation[torch.arange(len(ROWS)), cut.edit_index] += vector.to(activation.dtype)
                return activation

            logits = cut.run(model, predict, [(hook_name, add)])  # row-major = the order of ``wanted``
        (logits.log_softmax(-1)[:, 7].sum()).backward()
        gradients.append(vector.grad)
        if whole:
            expected = logits.detach()
        else:
            torch.testing.assert_close(logits.detach(), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gradients[1], gradients[0], atol=1e-4, rtol=1e-4)
    assert gradients[0].abs().sum() > 0


def test_positions_before_the_cut_are_refused(models):
    cut = cut_rows(models["gpt2"], ROWS, CUTS)
    assert cut.index_of(2, 5) == cut.edit_index[2]
    with pytest.raises(ValueError, match="before its cut"):
        cut.index_of(2, 4)
    with pytest.raises(ValueError, match="inside its row"):
        cut_rows(models["gpt2"], ROWS, [2, 3, 5, 1])


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_selected_rows_give_those_rows_logits(models, family):
    """A search drops the rows of requests that are done: the rows kept must give the logits they
    give in the full batch (rows do not interact)."""
    model = models[family]
    cut = cut_rows(model, ROWS, CUTS)
    predict = torch.zeros_like(cut.input_ids, dtype=torch.bool)
    for r, row in enumerate(ROWS):
        predict[r, cut.index_of(r, len(row) - 1)] = True  # one prediction per row: the last position
    with torch.no_grad():
        full = cut.run(model, predict)  # [rows, vocab]
        kept = torch.tensor([0, 2, 3])
        subset = cut.select(kept)
        assert subset.cut == [CUTS[i] for i in kept.tolist()]
        torch.testing.assert_close(subset.run(model, predict[kept]), full[kept], atol=1e-5, rtol=1e-5)


def test_prefixes_kept_in_chunks_equal_those_kept_at_once(models):
    model = models["llama"]
    whole, chunked = keep_prefixes(model, ROWS), keep_prefixes(model, ROWS, max_rows=3)
    assert torch.equal(whole.mask, chunked.mask)
    for (keys, values), (chunk_keys, chunk_values) in zip(whole.past, chunked.past):
        torch.testing.assert_close(chunk_keys, keys, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(chunk_values, values, atol=1e-5, rtol=1e-5)
    # a selection is trimmed to its longest prefix and continues like the whole rows cut there
    picked = whole.select(torch.tensor([1, 3, 1]))
    assert picked.mask.shape[1] == max(len(ROWS[1]), len(ROWS[3])) and picked.nbytes() < whole.nbytes()
