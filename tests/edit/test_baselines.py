"""Knowledge-neuron editing and the fine-tuning baselines on tiny models; statistics pinning."""
from __future__ import annotations

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench import families
from workbench.data import EditRequest
from workbench.edit.stats import pinned_statistics, second_moment
from workbench.errors import InvalidRequestError

REQUESTS = [
    EditRequest("The capital of {} is", "France", "Rome", "Paris"),
    EditRequest("{} is a city in", "Rome", "France", "Italy"),
]


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {family: workbench.load_model(tiny_model_dirs[family]) for family in ("gpt2", "llama", "gemma3")}


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_ft_l_never_exceeds_its_bound_and_touches_one_layer(models, family):
    model = models[family]
    before = snapshot(model)
    bound = 1e-3
    with workbench.edit(model, REQUESTS, "ft-l", layer=1, linf_bound=bound, lr=1e-2, steps=5, check_targets=False):
        name = families.mlp_out_projection(model, 1).name
        assert changed(model, before) == {name}
        change = families.parameter_values(model, name).detach().double() - before[name].double()
        rounding = torch.finfo(torch.float32).eps * (before[name].double().abs() + bound)  # storing in float32
        assert change.abs().max() > 0 and torch.all(change.abs() <= bound + rounding)
    assert changed(model, before) == set()


def test_ft_lowers_the_target_loss(models):
    model = models["gpt2"]
    with workbench.edit(model, REQUESTS, "ft", layer=1, lr=1e-2, steps=10, check_targets=False) as result:
        history = result.info["nll_history"]
    assert history[-1] < history[0]


@pytest.mark.parametrize("erase", [False, True])
def test_kn_edit_changes_exactly_the_found_neurons_value_vectors(models, erase):
    model = models["gpt2"]
    before = snapshot(model)
    with workbench.edit(model, REQUESTS[0], "kn", erase=erase, check_targets=False) as result:
        neurons = result.info["requests"][0]["neurons"]
        assert neurons, "the attribution found no neuron above the threshold"
        assert set(result.layers) == {l for l, _ in neurons}
        for name, delta in result.deltas.items():
            layer = next(l for l in range(model.cfg.n_layers) if families.mlp_out_projection(model, l).name == name)
            projection = families.mlp_out_projection(model, layer)
            matrix_delta = delta.T if projection.layout == "conv1d" else delta  # [d_out, d_in]
            touched = set(torch.nonzero(matrix_delta.abs().sum(0)).flatten().tolist())
            assert touched == {i for l, i in neurons if l == layer}
            if erase:
                assert torch.all(projection.matrix()[:, sorted(touched)] == 0)
            else:  # Dai et al.: each value vector moves by 8 e(new) - 1 e(old), e = the unembedding column
                new_id, old_id = (model.tokenizer(" " + word, add_special_tokens=False)["input_ids"][0] for word in ("Rome", "Paris"))
                expected = 8.0 * model.W_U[:, new_id] - 1.0 * model.W_U[:, old_id]  # [d_model]
                for column in touched:
                    torch.testing.assert_close(matrix_delta[:, column].float(), expected.detach(), rtol=1e-5, atol=1e-6)
    assert changed(model, before) == set()


def test_pinned_statistics_are_those_of_the_unedited_model(models, tmp_path):
    model = models["gpt2"]
    texts = ["The capital of France is Paris.", "Rome is a city in Italy."]
    unedited = second_moment(model, 1, texts, cache_dir=tmp_path, progress=False)
    with pinned_statistics(model):
        with workbench.edit(model, REQUESTS, "ft", layer=0, lr=1e-2, steps=3, check_targets=False):
            # editing layer 0 changes layer 1's keys, but the pinned statistics are the unedited ones
            assert not torch.equal(second_moment(model, 1, texts, cache_dir=None, progress=False), unedited)
            assert torch.equal(second_moment(model, 1, texts, cache_dir=tmp_path, progress=False), unedited)
            with pytest.raises(InvalidRequestError, match="pinned"):
                second_moment(model, 0, texts, cache_dir=tmp_path, progress=False)
