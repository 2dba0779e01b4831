"""UltraEdit: the running statistics and the ridge solve in closed form, the loss gradient against
finite differences, and the lifelong state rolled back with the weights on tiny models of every family."""
from __future__ import annotations

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench import families
from workbench.data import EditRequest
from workbench.edit.ultraedit import RunningStandardiser, key_gradient_rows, normaliser, ridge_update
from workbench.tokens import pad_right, teacher_forced_rows

FAMILIES = ["gpt2", "llama", "gemma3"]
FIRST = [EditRequest("The capital of {} is", "France", "Rome", "Paris"),
         EditRequest("{} is a city in", "Rome", "France", "Italy")]
SECOND = [EditRequest("The official language of {} is", "Peru", "German", "Spanish")]


def test_pooled_statistics_equal_those_of_all_rows_at_once():
    torch.manual_seed(0)
    rows = torch.randn(50, 4, dtype=torch.float64) * torch.tensor([1.0, 3.0, 0.1, 10.0], dtype=torch.float64) + 2
    running = RunningStandardiser.empty(4, "cpu")
    for chunk in (rows[:7], rows[7:8], rows[8:]):
        running.update(chunk)
    torch.testing.assert_close(running.mean, rows.mean(0))
    torch.testing.assert_close(running.standardise(rows), (rows - rows.mean(0)) / (rows.std(0) + 1e-8))


def test_ridge_update_is_the_least_squares_solution_of_the_augmented_system():
    torch.manual_seed(1)
    keys, values, ridge = torch.randn(6, 4, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64), 0.7
    augmented_keys = torch.cat([keys, ridge**0.5 * torch.eye(4, dtype=torch.float64)])  # [K; sqrt(r) I]
    augmented_values = torch.cat([values, torch.zeros(4, 3, dtype=torch.float64)])
    expected = torch.linalg.lstsq(augmented_keys, augmented_values).solution  # [d_in, d_out]
    torch.testing.assert_close(ridge_update(keys, values, ridge), expected.T)


@pytest.mark.parametrize("family", FAMILIES)
def test_the_gradient_rows_match_finite_differences(tiny_model_dirs, family):
    """g at each target-predicting position is the derivative of the mean target NLL with respect to
    the MLP output there: checked along a random direction by central differences."""
    model = workbench.load_model(tiny_model_dirs[family])
    layer, requests = 1, FIRST[:1]
    keys, gradients = key_gradient_rows(model, requests, [layer], micro_batch=10)[layer]
    rows, predicted = teacher_forced_rows(model, [r.filled_prompt() for r in requests], [r.target_new for r in requests])
    assert keys.shape == (len(predicted), model.cfg.d_mlp) and gradients.shape == (len(predicted), model.cfg.d_model)
    ids = pad_right(rows, model.tokenizer.pad_token_id)
    at_pos = torch.tensor([p for _, p, _ in predicted])
    tokens = torch.tensor([t for _, _, t in predicted])
    direction = torch.randn(len(predicted), model.cfg.d_model, generator=torch.Generator().manual_seed(2))

    def loss(step: float) -> float:
        def nudge(activation, hook=None):
            activation = activation.clone()
            activation[0, at_pos] += step * direction.to(activation.dtype)
            return activation

        with torch.no_grad():
            logits = model.run_with_hooks(ids, return_type="logits",
                                          fwd_hooks=[(families.Hooks.mlp_value(layer), nudge)]).double()
        return float(-logits[0, at_pos].log_softmax(-1).gather(1, tokens[:, None]).mean())

    numeric = (loss(1e-4) - loss(-1e-4)) / 2e-4
    analytic = float((gradients * direction.double()).sum())
    assert analytic == pytest.approx(numeric, rel=1e-2)


@pytest.mark.parametrize("family", FAMILIES)
def test_turns_edit_only_their_layers_and_restore_weights_and_statistics(tiny_model_dirs, family):
    model = workbench.load_model(tiny_model_dirs[family])
    before = snapshot(model)
    first = workbench.edit(model, FIRST, "ultraedit", layer=[0, 1], lr=1e-3)
    after_first, seen = snapshot(model), normaliser(model, 1).count
    assert seen == first.info["rows"] > 0
    second = workbench.edit(model, SECOND, "ultraedit", layer=[0, 1], lr=1e-3)
    assert normaliser(model, 1).count == seen + second.info["rows"]  # lifelong: every turn pooled
    assert changed(model, before) == {families.mlp_out_projection(model, l).name for l in (0, 1)}
    second.restore()
    assert changed(model, after_first) == set() and normaliser(model, 1).count == seen
    first.restore()
    assert changed(model, before) == set() and normaliser(model, 1).count == 0


@pytest.mark.parametrize("family", FAMILIES)
def test_by_default_the_last_blocks_but_the_final_one_are_edited(tiny_model_dirs, family):
    """Keys are read where the target is predicted, so no tracing layer is looked up: the default is
    the ``span`` output projections ending at the last block but one (the authors' configurations)."""
    model = workbench.load_model(tiny_model_dirs[family])
    before, last = snapshot(model), families.n_layers(model) - 2
    result = workbench.edit(model, FIRST, "ultraedit", span=1, lr=1e-3)
    assert result.info["layers"] == [last]
    assert changed(model, before) == {families.mlp_out_projection(model, last).name}
