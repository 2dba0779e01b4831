"""The interceptor hands a rule the residual stream its pass computed, for the real tokens of each input."""
from __future__ import annotations

import pytest
import torch

import workbench
from workbench import families
from workbench.edit.intercept import LogitRows, install_rule, remove_rule
from workbench.tokens import pad_left, pad_right

ROWS = [[5, 9, 13, 2, 7, 11], [3, 8, 1], [4, 4, 6, 10, 12]]
LAYER = 1


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["llama"])


class Recorder:
    """A rule that answers nothing and keeps the rows it was given."""

    def __init__(self) -> None:
        self.seen: list[LogitRows] = []

    def __call__(self, rows: LogitRows) -> dict:
        self.seen.append(rows)
        return {}


def _alone(model, row):
    """The residual entering ``LAYER`` for one row run on its own: the truth."""
    return families.residual_entering(model, torch.tensor([row]), LAYER)[0]


@pytest.mark.parametrize("padding", ["right", "left"])
def test_a_rule_gets_the_residual_of_each_inputs_real_tokens(model, padding):
    rule, owner = Recorder(), object()
    install_rule(model, owner, rule, residual_layers=[LAYER])
    try:
        if padding == "right":
            model(pad_right(ROWS, 0), return_type="logits")
        else:
            ids, mask = pad_left(ROWS, 0)
            model(ids, return_type="logits", attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0))
    finally:
        remove_rule(model, owner)
    (rows,) = rule.seen
    for row, residual in zip(ROWS, rows.residuals[LAYER]):
        expected = _alone(model, row)
        # right padding: padding positions follow the real ones and count as the input's tokens
        torch.testing.assert_close(residual[: len(row)], expected, atol=1e-5, rtol=1e-5)
        assert residual.shape[0] == (len(row) if padding == "left" else max(map(len, ROWS)))


def test_a_pass_fed_a_kv_cache_gives_no_residual_and_removal_drops_the_recorder(model):
    rule, owner = Recorder(), object()
    block = families.hf_module(model, families.family_of(model).layer.format(LAYER))
    hooks_before = len(block._forward_pre_hooks)
    install_rule(model, owner, rule, residual_layers=[LAYER])
    assert len(block._forward_pre_hooks) == hooks_before + 1
    try:
        _, cache = model(torch.tensor([ROWS[0]]), return_type="logits_and_cache")
        model(torch.tensor([[7]]), return_type="logits", past_key_values=cache)
    finally:
        remove_rule(model, owner)
    assert len(block._forward_pre_hooks) == hooks_before
    first, second = rule.seen
    assert set(first.residuals) == {LAYER} and second.residuals == {}
    assert second.prefixes == [tuple(ROWS[0]) + (7,)]  # the cache's history is still known
