"""MEMIT on tiny models: closed form, agreement with ROME, batched target search, reversibility."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench import families
from workbench.data import EditRequest
from workbench.edit.contexts import mean_keys, values_at_subject
from workbench.edit.memit import spread_update
from workbench.edit.spread import mass_edit_layers
from workbench.edit.rome import rank_one_update
from workbench.edit import targets
from workbench.edit.targets import ValueSearch, optimise_value_deltas, remembering_searches
from workbench.errors import InvalidRequestError, LayerOutOfRangeError
from workbench.probabilities import score_targets

REQUESTS = [
    EditRequest("The capital of {} is", "France", "Rome", "Paris"),
    EditRequest("{} is a city in", "Rome", "France", "Italy"),
    EditRequest("The official language of {} is", "Peru", "German", "Spanish"),
]
FAST = {"v_steps": 5, "mom2_n_samples": 200, "prefixes": ((3, 2),)}
# a single-layer MEMIT with a vanishing lambda and a bare NLL objective is ROME (Sherman-Morrison)
PLAIN = {"v_steps": 8, "v_weight_decay": 0.0, "kl_factor": 0.0, "clamp_norm_factor": 1e6, "mom2_n_samples": 200,
         "prefixes": ((3, 2),)}

pytestmark = pytest.mark.usefixtures("editing_corpus")  # tiny models bring no corpus of their own


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Four-layer tiny models: an edit at a layer must have later layers that read it."""
    from workbench.zoo.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("deeper-tiny-models")
    return {family: workbench.load_model(build_tiny_model(family, root / family, n_layers=4))
            for family in ("gpt2", "llama", "gemma3")}


def test_spread_update_of_one_key_is_a_shrunk_rank_one_update():
    torch.manual_seed(0)
    d_out, d_in, weight = 4, 6, 3.0
    factor = torch.randn(d_in, 2 * d_in, dtype=torch.float64)
    moment = factor @ factor.T / (2 * d_in)
    key, residual = torch.randn(d_in, dtype=torch.float64), torch.randn(d_out, dtype=torch.float64)
    update = spread_update(key[None], residual[None], moment, weight)
    quadratic = key @ torch.linalg.solve(moment, key)  # k^T C^-1 k
    expected = rank_one_update(torch.zeros(d_out, d_in, dtype=torch.float64), key, residual, moment)
    torch.testing.assert_close(update, expected * quadratic / (weight + quadratic))


def test_spread_update_solves_the_regularised_least_squares():
    torch.manual_seed(1)
    d_out, d_in, n, weight = 3, 5, 4, 0.7
    factor = torch.randn(d_in, 3 * d_in, dtype=torch.float64)
    moment = factor @ factor.T / (3 * d_in)
    keys, residuals = torch.randn(n, d_in, dtype=torch.float64), torch.randn(n, d_out, dtype=torch.float64)
    update = spread_update(keys, residuals, moment, weight)
    # gradient of weight * tr(D C D^T) + ||D K - R||^2 vanishes at the minimiser
    gradient = weight * update @ moment + (update @ keys.T - residuals.T) @ keys
    torch.testing.assert_close(gradient, torch.zeros_like(gradient), atol=1e-10, rtol=0)


@pytest.mark.parametrize("family", ["gpt2", "llama"])  # no post-MLP norm: the residual is what W writes
def test_single_layer_memit_matches_rome(models, family):
    model = models[family]
    request = REQUESTS[0]

    def log_p():
        return score_targets(model, [request.filled_prompt()], [request.target_new]).log_prob

    unedited = log_p()
    with workbench.edit(model, request, "rome", layer=0, **PLAIN) as rome:
        rome_log_p, (rome_delta,) = log_p(), rome.deltas.values()
    with workbench.edit(model, request, "memit", layer=[0], mom2_update_weight=1e-6, **PLAIN) as memit:
        memit_log_p, (memit_delta,) = log_p(), memit.deltas.values()
    assert rome_delta.abs().max() > 1e-4 and (rome_log_p - unedited).abs().item() > 1e-3  # not a no-op
    torch.testing.assert_close(memit_delta, rome_delta, atol=1e-6, rtol=1e-3)
    torch.testing.assert_close(memit_log_p, rome_log_p, atol=1e-3, rtol=0)


def test_single_layer_memit_through_a_post_mlp_norm_reaches_the_nearest_reachable_target(tmp_path):
    """Gemma 3 normalises the MLP output (RMSNorm, gain 1 + w) before the residual stream, so the
    spread maps the wanted residual change r = z - h back through that norm. An RMSNorm with unit
    gain outputs sqrt(d) x / |x|: the nearest output to the wanted y + r is sqrt(d) (y + r) / |y + r|,
    which a single-layer MEMIT with a vanishing lambda must realise at the subject's last token."""
    from workbench.zoo.tiny import build_tiny_model

    model = workbench.load_model(build_tiny_model("gemma3", tmp_path / "gemma3", n_layers=4))
    with torch.no_grad():  # MLP outputs far above the norm's epsilon, so sqrt(d) x / |x| holds
        families.mlp_out_projection(model, 1).matrix().mul_(1e3)
    assert families.hf_module(model, "model.layers.1.post_feedforward_layernorm").weight.abs().max() == 0  # gain 1
    request, hook, settings = REQUESTS[0], families.Hooks.resid_post(1), {**PLAIN, "prefixes": ()}
    search = workbench.edit.api.hyperparameters(model, "memit", **settings).value_search()
    found = optimise_value_deltas(model, hook, [request], ["{}"], search)
    wanted = found.deltas.double()  # r = z - h, [1, d_model]
    before, normed = values_at_subject(model, hook, [request]), values_at_subject(model, families.Hooks.mlp_out(1), [request])
    reachable = (normed + wanted) * model.cfg.d_model ** 0.5 / (normed + wanted).norm()
    with workbench.edit(model, request, "memit", layer=[1], mom2_update_weight=1e-6, **settings):
        after = values_at_subject(model, hook, [request])
    torch.testing.assert_close(after - before, reachable - normed, atol=2e-3, rtol=1e-3)
    assert (after - (before + wanted)).norm() < wanted.norm()  # moved towards z


def test_batched_target_search_equals_one_request_at_a_time(models):
    model = models["gpt2"]
    templates = ["{}", "Hello there. {}"]
    search = ValueSearch(steps=4)
    hook = families.Hooks.resid_post(1)
    together = optimise_value_deltas(model, hook, REQUESTS, templates, search)
    for i, request in enumerate(REQUESTS):
        alone = optimise_value_deltas(model, hook, [request], templates, search)
        torch.testing.assert_close(together.deltas[i], alone.deltas[0], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(together.original[i], alone.original[0])


def test_a_remembered_search_returns_what_searching_again_finds_until_the_weights_change(models, monkeypatch):
    model = models["llama"]
    hook, search = families.Hooks.resid_post(1), ValueSearch(steps=3)
    fresh = optimise_value_deltas(model, hook, REQUESTS, ["{}"], search)
    searches = []
    real = targets._searched
    monkeypatch.setattr(targets, "_searched", lambda *args: searches.append(args) or real(*args))
    with remembering_searches(model):
        first = optimise_value_deltas(model, hook, REQUESTS, ["{}"], search)
        first.deltas.zero_()  # a caller's change to a result must not reach the memory
        again = optimise_value_deltas(model, hook, REQUESTS, ["{}"], search)
        assert len(searches) == 1
        torch.testing.assert_close(again.deltas, fresh.deltas, atol=0, rtol=0)
        assert again.steps == fresh.steps and again.final_nll == fresh.final_nll
        optimise_value_deltas(model, hook, REQUESTS, ["{}"], replace(search, steps=2))  # other settings: a search
        assert len(searches) == 2
        with workbench.edit(model, REQUESTS[0], "rome", layer=1, v_steps=3, mom2_n_samples=200, prefixes=()):
            edited = optimise_value_deltas(model, hook, REQUESTS, ["{}"], search)  # other weights: a search
        assert len(searches) == 4  # ROME's own search for its edit, then this one
        assert not torch.equal(edited.original, fresh.original)
        optimise_value_deltas(model, hook, REQUESTS, ["{}"], search)  # the restored weights are remembered
        assert len(searches) == 4
    optimise_value_deltas(model, hook, REQUESTS, ["{}"], search)  # outside the block, nothing is remembered
    assert len(searches) == 5


def test_the_last_search_step_only_measures_and_converged_requests_stay_frozen(models):
    model = models["gpt2"]
    hook = families.Hooks.resid_post(1)
    measured = optimise_value_deltas(model, hook, REQUESTS, ["{}"], ValueSearch(steps=1))
    assert torch.count_nonzero(measured.deltas) == 0  # one step: a measurement, no update
    # a stop loss between the requests' starting NLLs stops the easiest one at once
    easiest = min(range(len(REQUESTS)), key=lambda i: measured.final_nll[i])
    threshold = (sorted(measured.final_nll)[0] + sorted(measured.final_nll)[1]) / 2
    searched = optimise_value_deltas(model, hook, REQUESTS, ["{}"], ValueSearch(steps=4, stop_loss=threshold))
    assert searched.steps[easiest] == 1 and torch.count_nonzero(searched.deltas[easiest]) == 0
    assert all(searched.steps[i] == 4 and searched.deltas[i].norm() > 0 for i in range(3) if i != easiest)


def test_memit_moves_the_last_layer_residual_onto_its_targets(models):
    """With a vanishing lambda and one context per request, the last layer's update closes the
    remaining gap exactly, so the residual at the subject's last token ends on z_i; dividing by
    the wrong number of layers, or reusing keys from before the earlier layers' updates, misses."""
    model = models["gpt2"]
    settings = {**PLAIN, "prefixes": (), "mom2_update_weight": 1e-6, "span": 3}
    hook = families.Hooks.resid_post(2)
    search = ValueSearch(steps=8, weight_decay=0.0, kl_factor=0.0, clamp_norm_factor=1e6)
    found = optimise_value_deltas(model, hook, REQUESTS, ["{}"], search)
    targets = found.original + found.deltas  # z_i
    with workbench.edit(model, REQUESTS, "memit", layer=2, **settings) as result:
        assert result.layers == [0, 1, 2]
        reached = values_at_subject(model, hook, REQUESTS).float()
    assert (targets - found.original).norm() > 1e-3
    torch.testing.assert_close(reached, targets, atol=1e-3, rtol=1e-3)


def test_mean_keys_are_per_request_averages(models):
    model = models["llama"]
    templates = ["{}", "Once upon a time. {}"]
    keys = mean_keys(model, 0, REQUESTS, templates)
    for i, request in enumerate(REQUESTS):
        torch.testing.assert_close(keys[i], mean_keys(model, 0, [request], templates)[0])


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_only_the_memit_layers_change_and_restore_is_bit_exact(models, family):
    model = models[family]
    before = snapshot(model)
    with workbench.edit(model, REQUESTS, "memit", layer=1, span=2, **FAST) as result:
        expected = {families.mlp_out_projection(model, l).name for l in (0, 1)}
        assert changed(model, before) == expected == set(result.deltas)
        assert result.info["layers"] == [0, 1]
    assert changed(model, before) == set()


def test_mass_edit_layers(models):
    model = models["gpt2"]
    assert mass_edit_layers(model, 1, span=3) == [0, 1]
    assert mass_edit_layers(model, [1, 0, 1], span=3) == [0, 1]
    with pytest.raises(LayerOutOfRangeError):
        mass_edit_layers(model, [0, 9], span=1)


def test_conflicting_targets_empty_batches_and_the_last_layer_are_refused_untouched(models):
    model = models["gpt2"]
    before = snapshot(model)
    for method in ("rome", "memit"):
        with pytest.raises(InvalidRequestError, match="last layer"):
            workbench.edit(model, REQUESTS[0], method, layer=3, **FAST)
    conflicting = [REQUESTS[0], EditRequest("The capital of {} is", "France", "Berlin", "Paris")]
    with pytest.raises(InvalidRequestError, match="conflicting targets"):
        workbench.edit(model, conflicting, "memit", layer=1, **FAST)
    with pytest.raises(InvalidRequestError, match="no edit requests"):
        workbench.edit(model, [], "memit", layer=1)
    assert changed(model, before) == set()


def test_a_bfloat16_search_finds_nearly_the_float32_deltas(models):
    model = models["llama"]
    hook = families.Hooks.resid_post(1)
    exact = optimise_value_deltas(model, hook, REQUESTS, ["{}"], ValueSearch(steps=4))
    reduced = optimise_value_deltas(model, hook, REQUESTS, ["{}"], ValueSearch(steps=4, dtype="bfloat16"))
    assert exact.deltas.norm() > 0
    cosine = torch.nn.functional.cosine_similarity(exact.deltas, reduced.deltas, dim=-1)
    assert cosine.min() > 0.95
    assert not torch.equal(exact.deltas, reduced.deltas)  # bfloat16 did run
    with pytest.raises(InvalidRequestError, match="compute dtype"):
        ValueSearch(dtype="float16")


def test_stop_on_target_bounds_the_whole_targets_nll_not_its_token_mean(models):
    """A stop loss between a long target's mean token NLL and its total NLL stops the search at
    once under ``token_mean`` and keeps it running under ``target``."""
    model = models["gpt2"]
    hook = families.Hooks.resid_post(1)
    request = EditRequest("The capital of {} is", "France", "the Republic of Trinidad and Tobago", "Paris")
    n_tokens = len(model.tokenizer(" " + request.target_new, add_special_tokens=False)["input_ids"])
    assert n_tokens > 3
    measured = optimise_value_deltas(model, hook, [request], ["{}"], ValueSearch(steps=1))
    mean_nll = measured.final_nll[0]
    threshold = mean_nll * (1 + n_tokens) / 2  # above the mean, below the sum (mean x tokens)
    by_mean = optimise_value_deltas(model, hook, [request], ["{}"], ValueSearch(steps=4, stop_loss=threshold))
    by_target = optimise_value_deltas(model, hook, [request], ["{}"],
                                      ValueSearch(steps=4, stop_loss=threshold, stop_on="target"))
    assert by_mean.steps == [1] and by_target.steps == [4]
    with pytest.raises(InvalidRequestError, match="stop_on"):
        ValueSearch(stop_on="sum")


def test_a_second_pass_moves_only_the_targets_unmet_after_the_first(models):
    """passes=2 is a second search on the once-edited model followed by a second spread: with a
    vanishing lambda (every target written exactly), the residual after two passes is the one
    after the first plus the deltas a search on the edited model finds, zero for the requests that
    already meet the stop loss there. With every target met, the second pass stops at once and the
    weights equal a single pass bit for bit."""
    model = models["gpt2"]
    hook = families.Hooks.resid_post(1)
    settings = {**PLAIN, "prefixes": (), "mom2_update_weight": 1e-6, "span": 2, "layer": 1}
    search = ValueSearch(steps=PLAIN["v_steps"], weight_decay=0.0, kl_factor=0.0, clamp_norm_factor=1e6)
    start = optimise_value_deltas(model, hook, REQUESTS, ["{}"], ValueSearch(steps=1)).final_nll
    between = (sorted(start)[-1] + sorted(start)[-2]) / 2  # only the hardest request is unmet at first

    with workbench.edit(model, REQUESTS, "memit", stop_loss=between, **settings):
        after_one = values_at_subject(model, hook, REQUESTS)
        again = optimise_value_deltas(model, hook, REQUESTS, ["{}"], replace(search, stop_loss=between))
    unmet = [steps > 1 for steps in again.steps]
    assert any(unmet)
    with workbench.edit(model, REQUESTS, "memit", stop_loss=between, passes=2, **settings) as result:
        assert result.info["searched_again"] == [sum(unmet)]
        after_two = values_at_subject(model, hook, REQUESTS)
    torch.testing.assert_close(after_two.float(), (after_one + again.deltas).float(), atol=1e-3, rtol=1e-3)
    assert not all(unmet) and all(again.deltas[i].count_nonzero() == 0 for i, moved in enumerate(unmet) if not moved)

    met = max(start) + 1.0
    with workbench.edit(model, REQUESTS, "memit", stop_loss=met, **settings):
        written = {name: p.detach().clone() for name, p in model.named_parameters()}
    with workbench.edit(model, REQUESTS, "memit", stop_loss=met, passes=2, **settings) as result:
        assert result.info["searched_again"] == [0]
        assert all(torch.equal(p, written[name]) for name, p in model.named_parameters())
    with pytest.raises(InvalidRequestError, match="passes"):
        workbench.edit(model, REQUESTS, "memit", layer=1, passes=0)
