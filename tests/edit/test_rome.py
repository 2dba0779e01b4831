"""ROME on tiny models of two layouts: closed form, reversibility, isolation, bad input."""
from __future__ import annotations

import pytest
import torch
from weights_snapshot import changed as _changed
from weights_snapshot import snapshot as _snapshot

import workbench
from workbench import families
from workbench.data import EditRequest
from workbench.edit import load_edit
from workbench.edit import rome as rome_module
from workbench.edit.api import request_from_prompt
from workbench.edit.rome import rank_one_update
from workbench.errors import (
    InvalidRequestError,
    LayerOutOfRangeError,
    SubjectNotInPromptError,
    TargetAlreadyPredictedError,
)
from workbench.tokens import locate_subject

REQUEST = EditRequest("The capital of {} is", "France", "Rome", "Paris")
FAST = {"v_steps": 5, "mom2_n_samples": 200, "prefixes": ((3, 2),)}

pytestmark = pytest.mark.usefixtures("editing_corpus")  # tiny models bring no corpus of their own


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {family: workbench.load_model(tiny_model_dirs[family]) for family in ("gpt2", "llama", "gemma3")}


def test_rank_one_update_closed_form():
    torch.manual_seed(0)
    d_out, d_in = 5, 7
    weight = torch.randn(d_out, d_in, dtype=torch.float64)
    factor = torch.randn(d_in, 3 * d_in, dtype=torch.float64)
    moment = factor @ factor.T / (3 * d_in)  # a positive definite C
    key, delta = torch.randn(d_in, dtype=torch.float64), torch.randn(d_out, dtype=torch.float64)
    update = rank_one_update(weight, key, delta, moment)
    torch.testing.assert_close((weight + update) @ key, weight @ key + delta)
    assert torch.linalg.matrix_rank(update).item() == 1
    # keys C-orthogonal to k* (x^T C^-1 k* = 0) are left alone
    direction = torch.linalg.solve(moment, key)
    other = torch.randn(d_in, dtype=torch.float64)
    other -= direction * (other @ direction) / (direction @ direction)
    torch.testing.assert_close(update @ other, torch.zeros(d_out, dtype=torch.float64))


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_only_the_chosen_projection_changes_and_restore_is_bit_exact(models, family):
    model = models[family]
    before = _snapshot(model)
    with workbench.edit(model, REQUEST, layer=0, **FAST) as result:
        projection = families.mlp_out_projection(model, 0)
        assert _changed(model, before) == {projection.name}
        assert set(result.deltas) == {projection.name}
        delta = result.deltas[projection.name]
        assert delta.shape == projection.weight.shape
        singular = torch.linalg.svdvals(delta.double())
        assert singular[1] / singular[0] < 1e-5  # rank one up to float32 rounding
    assert _changed(model, before) == set()


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_mean_mlp_output_over_the_contexts_moves_by_delta(models, family):
    """ROME's closed form read back from forward passes: W' k* = W k* + delta with k* the mean key
    over the contexts, so the MLP output at the subject's last token, averaged over the same
    contexts, moves by a vector of norm ||delta|| (reported by the edit), and only there."""
    model = models[family]
    hook = families.Hooks.mlp_value(0)  # before Gemma's post-MLP norm, where ROME writes

    def mean_output(templates):
        outputs = []
        for template in templates:
            span = locate_subject(model, template.format(REQUEST.filled_prompt()), REQUEST.subject,
                                  search_from=template.index("{}"))
            _, cache = model.run_with_cache(span.input_ids, names_filter=lambda name: name == hook)
            outputs.append(cache[hook][0, span.last].double())
        return torch.stack(outputs).mean(0)

    with workbench.edit(model, REQUEST, layer=0, **FAST) as result:
        templates = result.info["prefixes"]
        after = mean_output(templates)
    before = mean_output(templates)
    reported = result.info["requests"][0]["delta_norm"]
    assert reported > 0
    torch.testing.assert_close((after - before).norm().item(), reported, rtol=2e-3, atol=1e-4)


def test_saved_edit_replays_bit_exactly(models, tmp_path):
    model = models["gpt2"]
    before = _snapshot(model)
    result = workbench.edit(model, REQUEST, layer=0, **FAST)
    edited = _snapshot(model)
    result.save(tmp_path / "edit")
    result.restore()
    assert _changed(model, before) == set()
    replay = load_edit(tmp_path / "edit")
    assert replay.requests == [REQUEST] and replay.method == "rome"
    replayed = replay.apply(model)
    assert _changed(model, edited) == set()
    replayed.restore()
    assert _changed(model, before) == set()


def test_failure_part_way_restores_the_weights(models, monkeypatch):
    model = models["gpt2"]
    before = _snapshot(model)
    calls = {"n": 0}
    original = rome_module.optimise_value_deltas

    def fail_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("simulated failure")
        return original(*args, **kwargs)

    monkeypatch.setattr(rome_module, "optimise_value_deltas", fail_on_second)
    second = EditRequest("{} is a city in", "Rome", "France", "Italy")
    with pytest.raises(RuntimeError, match="simulated"):
        workbench.edit(model, [REQUEST, second], layer=0, **FAST)
    assert calls["n"] == 2
    assert _changed(model, before) == set()


@pytest.mark.parametrize(
    "request_or_kwargs, error",
    [
        ({"requests": EditRequest("The capital of {} is", "Spain", "Rome"), "layer": 0}, None),
        ({"requests": REQUEST, "layer": 7}, LayerOutOfRangeError),
        ({"requests": REQUEST, "layer": 0, "v_stepz": 3}, InvalidRequestError),
        ({"requests": REQUEST, "layer": 0, "method": "magic"}, InvalidRequestError),
        ({"requests": [], "layer": 0}, InvalidRequestError),
    ],
)
def test_bad_input_leaves_the_model_untouched(models, request_or_kwargs, error):
    model = models["gpt2"]
    before = _snapshot(model)
    kwargs = dict(request_or_kwargs)
    requests = kwargs.pop("requests")
    if error is None:  # a valid request, as a control: it does change the weights
        workbench.edit(model, requests, **kwargs, **FAST).restore()
        return
    with pytest.raises(error):
        workbench.edit(model, requests, **kwargs)
    assert _changed(model, before) == set()


def test_subject_missing_from_prompt_is_refused():
    with pytest.raises(SubjectNotInPromptError, match="Germany"):
        request_from_prompt("The capital of France is", "Germany", "Rome")
    request = request_from_prompt("The capital of France is", "France", "Rome")
    assert request.prompt == "The capital of {} is" and request.filled_prompt() == "The capital of France is"


def test_empty_target_is_refused():
    with pytest.raises(InvalidRequestError):
        EditRequest("The capital of {} is", "France", "  ")


def test_target_already_predicted_is_refused(models):
    model = models["gpt2"]
    prompt = "The capital of France is"
    top = model(model.tokenizer(prompt, return_tensors="pt")["input_ids"], return_type="logits")[0, -1].argmax()
    already = model.tokenizer.decode([int(top)]).strip() or "x"
    if model.tokenizer(" " + already, add_special_tokens=False)["input_ids"][0] != int(top):
        pytest.skip("the top token of this random model is not a clean word")
    before = _snapshot(model)
    with pytest.raises(TargetAlreadyPredictedError):
        workbench.edit(model, EditRequest("The capital of {} is", "France", already), layer=0)
    assert _changed(model, before) == set()


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_edits_searched_together_match_edits_searched_alone(models, family):
    """Independent edits inside searching_together take v* from one batched search; each equals the
    edit made alone (the requests' searches do not interact: same steps, same update up to rounding)."""
    model = models[family]
    requests = [REQUEST, EditRequest("{} is a city in", "Rome", "France", "Italy"),
                EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English", "French")]
    projection = families.mlp_out_projection(model, 0)

    def edits() -> list[tuple[torch.Tensor, int]]:
        found = []
        for request in requests:
            with workbench.edit(model, request, layer=0, **FAST) as result:
                found.append((result.deltas[projection.name].double(), result.info["requests"][0]["v_steps"]))
        return found

    alone = edits()
    searches = {"n": 0}
    original = rome_module.optimise_value_deltas

    def counted(*args, **kwargs):
        searches["n"] += 1
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rome_module, "optimise_value_deltas", counted)
        with rome_module.searching_together(model, requests):
            together = edits()
    assert searches["n"] == 1
    for (update_alone, steps_alone), (update_together, steps_together) in zip(alone, together):
        assert steps_together == steps_alone
        torch.testing.assert_close(update_together, update_alone, rtol=1e-3, atol=1e-5 * update_alone.abs().max().item())


def test_an_edit_on_changed_weights_searches_anew(models):
    """Inside searching_together, the second request of one sequential call sees the first's edit, so
    its target is searched again, not taken from the batch found on the unedited weights."""
    model = models["llama"]
    second = EditRequest("{} is a city in", "Rome", "France", "Italy")
    projection = families.mlp_out_projection(model, 0)
    with workbench.edit(model, [REQUEST, second], layer=0, **FAST) as result:
        sequential = result.deltas[projection.name].double()
    with rome_module.searching_together(model, [REQUEST, second]):
        with workbench.edit(model, [REQUEST, second], layer=0, **FAST) as result:
            inside = result.deltas[projection.name].double()
    torch.testing.assert_close(inside, sequential, rtol=1e-3, atol=1e-5 * sequential.abs().max().item())
