"""AlphaEdit: the null-space projection and projected update in closed form, preserved keys across
sequential edits, reversibility on tiny models."""
from __future__ import annotations

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench import families
from workbench.data import EditRequest
from workbench.edit.alphaedit import edited_keys, forget_edited_keys, null_space_projection, projected_update
from workbench.edit.memit import spread_update

FIRST = [EditRequest("The capital of {} is", "France", "Rome", "Paris"),
         EditRequest("{} is a city in", "Rome", "France", "Italy")]
SECOND = [EditRequest("The official language of {} is", "Peru", "German", "Spanish")]
FAST = {"v_steps": 5, "mom2_n_samples": 200, "prefixes": ((3, 2),)}

pytestmark = pytest.mark.usefixtures("editing_corpus")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from workbench.zoo.tiny import build_tiny_model

    return workbench.load_model(build_tiny_model("llama", tmp_path_factory.mktemp("alphaedit") / "llama", n_layers=4))


def test_projection_spans_the_eigenvectors_below_the_threshold():
    torch.manual_seed(0)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
    moment = rotation @ torch.diag(torch.tensor([1.0, 0.5, 0.01, 0.001], dtype=torch.float64)) @ rotation.T
    projection = null_space_projection(moment, threshold=2e-2)
    torch.testing.assert_close(projection, rotation[:, 2:] @ rotation[:, 2:].T)
    assert torch.count_nonzero(null_space_projection(moment, threshold=1e-4)) == 0


def test_projected_update_leaves_the_preserved_keys_outputs_unchanged():
    """Corpus keys of rank 5 in 8 dimensions: their null space is exact, so the update must not
    move any of their outputs, while it still moves the new keys'."""
    torch.manual_seed(1)
    d_in, d_out = 8, 3
    corpus_keys = torch.randn(200, 5, dtype=torch.float64) @ torch.randn(5, d_in, dtype=torch.float64)  # [200, d_in]
    projection = null_space_projection(corpus_keys.T @ corpus_keys / len(corpus_keys), threshold=1e-9)
    assert round(float(projection.trace())) == 3
    keys, residuals = torch.randn(2, d_in, dtype=torch.float64), torch.randn(2, d_out, dtype=torch.float64)
    earlier = torch.randn(1, d_in, dtype=torch.float64)
    update = projected_update(keys, residuals, projection, earlier, l2=0.1)  # [d_out, d_in]
    assert (update @ corpus_keys.T).abs().max() < 1e-5
    assert (update @ keys.T).norm() > 0.1 * residuals.norm()
    torch.testing.assert_close(update, update @ projection)


def test_projected_update_solves_the_papers_objective():
    """The gradient of ||D P K - R||^2 + ||D P K_p||^2 + l2 ||D P||^2, restricted to the null space,
    vanishes at the update."""
    torch.manual_seed(2)
    d_in, d_out, l2 = 6, 4, 0.3
    basis, _ = torch.linalg.qr(torch.randn(d_in, d_in, dtype=torch.float64))
    projection = basis[:, :4] @ basis[:, :4].T
    keys, residuals = torch.randn(3, d_in, dtype=torch.float64), torch.randn(3, d_out, dtype=torch.float64)
    earlier = torch.randn(2, d_in, dtype=torch.float64)
    update = projected_update(keys, residuals, projection, earlier, l2)
    gradient = ((update @ projection @ keys.T - residuals.T) @ keys @ projection
                + update @ projection @ earlier.T @ earlier @ projection + l2 * update @ projection)
    torch.testing.assert_close(gradient, torch.zeros_like(gradient), atol=1e-10, rtol=0)


def test_without_a_projection_it_is_memit_with_an_identity_moment():
    torch.manual_seed(3)
    keys, residuals = torch.randn(3, 5, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64)
    identity = torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(projected_update(keys, residuals, identity, torch.zeros(0, 5, dtype=torch.float64), 0.7),
                               spread_update(keys, residuals, identity, 0.7))


def test_sequential_edits_keep_earlier_keys_and_restore_bit_exactly(model):
    before = snapshot(model)
    layer = 1
    first = workbench.edit(model, FIRST, "alphaedit", layer=[layer], **FAST)
    assert edited_keys(model, layer).shape == (len(FIRST), model.cfg.d_mlp)
    after_first = snapshot(model)
    second = workbench.edit(model, SECOND, "alphaedit", layer=[layer], **FAST)
    assert edited_keys(model, layer).shape == (len(FIRST) + len(SECOND), model.cfg.d_mlp)
    assert second.info["preserved_keys"] == len(FIRST)
    assert changed(model, before) == {families.mlp_out_projection(model, layer).name}
    second.restore()
    assert changed(model, after_first) == set() and len(edited_keys(model, layer)) == len(FIRST)
    first.restore()
    assert changed(model, before) == set() and len(edited_keys(model, layer)) == 0


def test_a_later_edit_barely_moves_the_keys_of_an_earlier_one(model):
    """With the projection open (threshold above every eigenvalue) and a small l2, the second update
    trades fitting its own keys against keeping the first edit's keys' outputs (equal weights, as in
    the paper): it must move them clearly less than when they are forgotten (measured: 0.41x)."""
    layer, settings = 1, {**FAST, "null_space_threshold": 1e9, "l2": 1e-3}
    name = families.mlp_out_projection(model, layer).name  # llama: stored as [d_out, d_in]
    moved = {}
    for keep in (True, False):
        with workbench.edit(model, FIRST, "alphaedit", layer=[layer], **settings):
            earlier = edited_keys(model, layer).float()  # [2, d_mlp]
            if not keep:
                forget_edited_keys(model)
            with workbench.edit(model, SECOND, "alphaedit", layer=[layer], **settings) as second:
                moved[keep] = (second.deltas[name] @ earlier.T).norm()
    assert moved[False] > 1e-3
    assert moved[True] < 0.6 * moved[False]
