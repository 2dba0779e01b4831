"""MEND: the update is built from the fine-tuning gradient's rank-one factors; untrained (identity)
networks give exactly a gradient step; edits restore bit-exactly; networks save and reload."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench.data import EditRequest
from workbench.edit.mend import MendNetworks
from workbench.errors import InvalidRequestError
from workbench.families import mlp_out_projection, parameter_values
from workbench.probabilities import score_targets
from workbench.tokens import locate_subject, target_ids

STEP = 0.5
ONE_STEP = {"max_steps": 1, "step_scale": 1.0}
"""The paper's single application of the networks, as trained."""


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["llama"])


def _one_token_word(model) -> str:
    return next(w for w in ["the", "and", "a", "of", "to", "in", "is"] if len(target_ids(model, w)) == 1)


def _requests(model, n):
    word = _one_token_word(model)
    prompts = ["The capital of {} is", "The official language of {} is"]
    return [EditRequest(prompt, subject, word) for prompt, subject in zip(prompts, ["France", "Peru"])][:n]


def _identity_networks(model, folder, layers, subject_tokens=False) -> str:
    projection = mlp_out_projection(model, layers[0])
    networks = MendNetworks(layers, projection.d_in, projection.d_out, rank=4, log_step=math.log(STEP),
                            subject_tokens=subject_tokens)
    return str(networks.save(folder, model_name="tiny"))


def _random_networks(layers, projection) -> MendNetworks:
    """Networks far from the identity (seeded normal weights): a nonlinear map of the factors."""
    networks = MendNetworks(layers, projection.d_in, projection.d_out, rank=4)
    torch.manual_seed(0)
    for parameter in networks.parameters():
        torch.nn.init.normal_(parameter, std=0.1)
    return networks


def _weight_gradient(model, requests, name):
    """d (sum over requests of each one's mean target NLL) / dW by ordinary backpropagation through the whole model."""
    prompts = [model.tokenizer(r.filled_prompt())["input_ids"] for r in requests]
    answers = [target_ids(model, r.target_new) for r in requests]
    parameter = parameter_values(model, name)  # the live parameter (nothing is offloaded)
    parameter.requires_grad_(True)
    try:
        losses = []
        for prompt, answer in zip(prompts, answers):
            logits = model.original_model(torch.tensor([prompt + answer[:-1]]), use_cache=False).logits[0]
            predicted = logits[len(prompt) - 1 : len(prompt) - 1 + len(answer)]
            losses.append(torch.nn.functional.cross_entropy(predicted, torch.tensor(answer)))
        loss = sum(losses)
        (gradient,) = torch.autograd.grad(loss, parameter)
    finally:
        parameter.requires_grad_(False)
    return gradient


@pytest.mark.parametrize("n_requests", [1, 2])
def test_untrained_networks_take_a_gradient_step_of_rank_one_per_request(model, tmp_path, n_requests):
    last = model.cfg.n_layers - 1
    folder = _identity_networks(model, tmp_path / "mend", [last])
    requests = _requests(model, n_requests)
    name = mlp_out_projection(model, last).name
    expected = -STEP * _weight_gradient(model, requests, name)
    with workbench.edit(model, requests, "mend", networks=folder, check_targets=False, **ONE_STEP) as result:
        delta = result.deltas[name]
    torch.testing.assert_close(delta, expected, atol=1e-6, rtol=1e-4)
    # one-token targets: only the last prompt position's gradient reaches the last block's MLP
    singular = torch.linalg.svdvals(delta.double())
    assert int((singular > 1e-6 * singular[0]).sum()) == n_requests


def _subject_only_gradient(model, request, layer):
    """d (mean target NLL) / dW of ``layer``'s MLP output projection, W used only at the subject's tokens:
    a leaf copy of W computes the output there (ordinary backpropagation, no factors)."""
    span = locate_subject(model, request.filled_prompt(), request.subject)
    projection = mlp_out_projection(model, layer)
    copy = projection.matrix().detach().clone().requires_grad_(True)  # [d_out, d_in] (llama: as stored)

    def at_subject(module, args, output):
        u = args[0][:, span.start: span.end]
        output = output.clone()
        output[:, span.start: span.end] += u @ (copy - copy.detach()).T  # same value, W's gradient there
        return output

    prompt = model.tokenizer(request.filled_prompt())["input_ids"]
    answer = target_ids(model, request.target_new)
    handle = projection.module.register_forward_hook(at_subject)
    try:
        logits = model.original_model(torch.tensor([prompt + answer[:-1]]), use_cache=False).logits[0]
    finally:
        handle.remove()
    predicted = logits[len(prompt) - 1: len(prompt) - 1 + len(answer)]
    (gradient,) = torch.autograd.grad(torch.nn.functional.cross_entropy(predicted, torch.tensor(answer)), copy)
    return gradient


def test_subject_token_networks_step_along_the_gradient_through_the_subjects_tokens_only(model, tmp_path):
    layer = 0  # an early block: the subject's tokens reach the answer through attention
    folder = _identity_networks(model, tmp_path / "subject", [layer], subject_tokens=True)
    request = EditRequest("The capital of {} is", "United Kingdom", _one_token_word(model))
    name = mlp_out_projection(model, layer).name
    with workbench.edit(model, [request], "mend", networks=folder, check_targets=False, **ONE_STEP) as result:
        delta = result.deltas[name]
    expected = -STEP * _subject_only_gradient(model, request, layer)
    assert expected.norm() > 0
    torch.testing.assert_close(delta, expected, atol=1e-6, rtol=1e-4)
    everywhere = -STEP * _weight_gradient(model, [request], name)
    assert (delta - everywhere).norm() > 1e-3 * everywhere.norm()  # the other tokens' share is left out


def test_a_batchs_update_is_the_sum_of_its_requests_updates_alone(model, tmp_path):
    """Each request's step is the one it gets alone, whatever the batch size (trained networks are
    nonlinear per token, not across requests, so this holds for them too)."""
    layers = [model.cfg.n_layers - 1]
    projection = mlp_out_projection(model, layers[0])
    networks = _random_networks(layers, projection)
    folder = str(networks.save(tmp_path / "random", model_name="tiny"))
    requests = _requests(model, 2)
    deltas = []
    for batch in ([requests[0]], [requests[1]], requests):
        with workbench.edit(model, batch, "mend", networks=folder, check_targets=False, **ONE_STEP) as result:
            deltas.append(result.deltas[projection.name])
    torch.testing.assert_close(deltas[2], deltas[0] + deltas[1], atol=1e-6, rtol=1e-4)


def test_another_step_is_the_update_of_the_edited_model_and_done_requests_take_none(model, tmp_path):
    """max_steps: a second step equals a second MEND edit made on the first's weights; requests already
    done (new target NLL under stop_loss) are not stepped again."""
    layers = [model.cfg.n_layers - 1]
    projection = mlp_out_projection(model, layers[0])
    folder = str(_random_networks(layers, projection).save(tmp_path / "steps", model_name="tiny"))
    requests = _requests(model, 2)
    with workbench.edit(model, requests, "mend", networks=folder, check_targets=False, **ONE_STEP) as first:
        with workbench.edit(model, requests, "mend", networks=folder, check_targets=False, **ONE_STEP) as second:
            twice = first.deltas[projection.name] + second.deltas[projection.name]
    with workbench.edit(model, requests, "mend", networks=folder, check_targets=False, max_steps=2, step_scale=1.0,
                        stop_loss=-1.0) as stepped:  # no NLL is below -1: every request takes both steps
        torch.testing.assert_close(stepped.deltas[projection.name], twice, atol=1e-6, rtol=1e-4)
        assert stepped.info["requests_per_step"] == [2, 2]
    with workbench.edit(model, requests, "mend", networks=folder, check_targets=False, max_steps=3, step_scale=1.0,
                        stop_loss=1e9) as done:  # every request is done after the first step
        torch.testing.assert_close(done.deltas[projection.name], first.deltas[projection.name], rtol=0, atol=0)
        assert done.info["requests_per_step"] == [2]
    with workbench.edit(model, requests, "mend", networks=folder, check_targets=False, **ONE_STEP):
        log_p = score_targets(model, [r.filled_prompt() for r in requests], [r.target_new for r in requests]).log_prob
        nll = (-log_p).tolist()  # one-token targets: the mean target NLL after the first step
        left = max(range(2), key=lambda i: nll[i])
        with workbench.edit(model, [requests[left]], "mend", networks=folder, check_targets=False, **ONE_STEP) as more:
            expected = first.deltas[projection.name] + more.deltas[projection.name]
    assert nll[0] != nll[1]
    with workbench.edit(model, requests, "mend", networks=folder, check_targets=False, max_steps=2, step_scale=1.0,
                        stop_loss=sum(nll) / 2) as mixed:  # one request done after the first step, one not
        assert mixed.info["requests_per_step"] == [2, 1]
        torch.testing.assert_close(mixed.deltas[projection.name], expected, atol=1e-6, rtol=1e-4)


def test_an_edit_of_several_layers_restores_bit_exactly_and_leaves_other_layers_alone(model, tmp_path):
    layers = [model.cfg.n_layers - 2, model.cfg.n_layers - 1]
    folder = _identity_networks(model, tmp_path / "mend2", layers)
    weights = snapshot(model)
    with workbench.edit(model, _requests(model, 2), "mend", networks=folder, check_targets=False, **ONE_STEP) as result:
        assert changed(model, weights) == {mlp_out_projection(model, l).name for l in layers}
        assert result.layers == layers
    assert changed(model, weights) == set()


def test_saved_networks_reload_and_refuse_another_model(model, tmp_path):
    layers = [model.cfg.n_layers - 1]
    projection = mlp_out_projection(model, layers[0])
    networks = _random_networks(layers, projection)
    reloaded = MendNetworks.load(networks.save(tmp_path / "saved", model_name="tiny"), model)
    u, delta = torch.randn(5, projection.d_in), torch.randn(5, projection.d_out)
    factors = {layers[0]: (u, delta)}
    torch.testing.assert_close(reloaded.updates(factors)[layers[0]], networks.updates(factors)[layers[0]], rtol=0, atol=0)
    with pytest.raises(InvalidRequestError, match="do not fit"):
        MendNetworks.load(tmp_path / "saved", workbench.load_model("factgpt"))


def test_damaged_networks_are_refused(model, tmp_path):
    folder = Path(_identity_networks(model, tmp_path / "damaged", [model.cfg.n_layers - 1]))
    MendNetworks.load(folder, model)  # intact: loads
    tensors = folder / "mend.safetensors"
    data = bytearray(tensors.read_bytes())
    data[-1] ^= 1
    tensors.write_bytes(bytes(data))
    with pytest.raises(InvalidRequestError, match="damaged"):
        MendNetworks.load(folder, model)


@pytest.mark.parametrize("bad", [{"step_scale": 0.0}, {"max_steps": 0}, {}, {"networks": "/nonexistent"}, {"layer": 1}])
def test_bad_settings_or_no_networks_are_refused_with_the_model_untouched(model, bad):
    weights = snapshot(model)
    with pytest.raises(InvalidRequestError):
        workbench.edit(model, _requests(model, 1), "mend", check_targets=False, **bad)
    assert changed(model, weights) == set()
