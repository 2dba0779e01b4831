"""Causal tracing checked against invariants that hold for any model, on every family."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES

import workbench
from workbench import families
from workbench.errors import InvalidRequestError, SubjectNotInPromptError
from workbench.locate import batched
from workbench.locate.tracing import TraceResult, trace, trace_kinds
from workbench.tokens import locate_subject

PROMPT, SUBJECT = "The capital of France is", "France"


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {family: workbench.load_model(path) for family, path in tiny_model_dirs.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_without_noise_every_restoration_gives_the_clean_probability(models, family):
    result = trace(models[family], PROMPT, SUBJECT, samples=2, noise_scale=0.0)
    assert result.corrupted_prob == pytest.approx(result.clean_prob, abs=1e-6)
    np.testing.assert_allclose(result.scores, result.clean_prob, atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_restoring_the_last_hidden_state_restores_the_output(models, family):
    result = trace(models[family], PROMPT, SUBJECT, samples=3, noise=10.0)
    assert result.scores[-1, -1] == pytest.approx(result.clean_prob, rel=1e-4)
    assert abs(result.corrupted_prob - result.clean_prob) > 1e-6  # the noise did something


def _naive_restoration(model, prompt, subject, noise, hook_name, token):
    """One restoration, written independently of the batched runner."""
    span = locate_subject(model, prompt, subject)
    _, cache = model.run_with_cache(span.input_ids)
    clean = cache[hook_name][0, token].clone()

    def corrupt(embeddings, hook):
        embeddings[:, span.start : span.end] += noise
        return embeddings

    def restore(activation, hook):
        activation[:, token] = clean
        return activation

    with torch.no_grad():
        logits = model.run_with_hooks(span.input_ids.expand(len(noise), -1), return_type="logits",
                                      fwd_hooks=[("hook_embed", corrupt), (hook_name, restore)])
    return logits[:, -1].softmax(-1)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["hidden", "mlp", "attn"])
def test_batched_trace_matches_one_restoration_at_a_time(models, kind, family):
    # the batched runner starts runs at the first patched token and block; the naive one runs everything
    model = models[family]
    batched = trace(model, PROMPT, SUBJECT, kind=kind, samples=4, window=1, seed=3)
    one_by_one = trace(model, PROMPT, SUBJECT, kind=kind, samples=4, window=1, seed=3, memory_budget=1)
    np.testing.assert_allclose(batched.scores, one_by_one.scores, rtol=1e-5, atol=1e-8)
    # and against a naive implementation, with the same noise
    span = locate_subject(model, PROMPT, SUBJECT)
    generator = torch.Generator().manual_seed(3)
    noise = torch.randn((4, span.end - span.start, model.cfg.d_model), generator=generator)
    noise *= batched.settings["noise_scale"]
    hook = {"hidden": families.Hooks.resid_post, "mlp": families.Hooks.mlp_out, "attn": families.Hooks.attn_out}[kind]
    for token in range(span.start, span.input_ids.shape[1]):
        for layer in range(model.cfg.n_layers):
            expected = _naive_restoration(model, PROMPT, SUBJECT, noise, hook(layer), token)[:, batched.answer_id].mean()
            assert batched.scores[token, layer] == pytest.approx(expected.item(), rel=1e-5, abs=1e-9)
    # tokens before the subject never see the noise (causal attention): restoring them is a no-op,
    # which is why trace() does not run them
    for token in range(span.start):
        expected = _naive_restoration(model, PROMPT, SUBJECT, noise, hook(1), token)[:, batched.answer_id].mean()
        assert batched.corrupted_prob == pytest.approx(expected.item(), rel=1e-5)
        assert batched.scores[token, 1] == batched.corrupted_prob


def test_window_restores_neighbouring_layers_together(models):
    model = models["gpt2"]
    single = trace(model, PROMPT, SUBJECT, kind="mlp", samples=3, window=1, noise=10.0)
    wide = trace(model, PROMPT, SUBJECT, kind="mlp", samples=3, window=10, noise=10.0)
    assert wide.settings["window"] == 10 and single.settings["window"] == 1
    # with 2 layers a window of 10 restores both layers in every column
    np.testing.assert_allclose(wide.scores[:, 0], wide.scores[:, 1], rtol=1e-6)
    assert not np.allclose(single.scores[:, 0], single.scores[:, 1])


def test_severed_trace_equals_plain_trace_at_the_last_layer(models):
    model = models["llama"]
    plain = trace(model, PROMPT, SUBJECT, samples=3, noise=10.0)
    severed = trace(model, PROMPT, SUBJECT, samples=3, noise=10.0, severed="mlp")
    np.testing.assert_allclose(severed.scores[:, -1], plain.scores[:, -1], rtol=1e-5)
    assert not np.allclose(severed.scores[:, 0], plain.scores[:, 0])


def test_trace_is_deterministic_for_a_seed(models):
    model = models["gpt-neox"]
    first = trace(model, PROMPT, SUBJECT, samples=3, seed=7)
    second = trace(model, PROMPT, SUBJECT, samples=3, seed=7)
    other = trace(model, PROMPT, SUBJECT, samples=3, seed=8)
    np.testing.assert_array_equal(first.scores, second.scores)
    assert not np.array_equal(first.scores, other.scores)


@pytest.mark.parametrize("family", FAMILIES)
def test_tracing_kinds_together_equals_tracing_them_one_by_one(models, family):
    model = models[family]
    together = trace_kinds(model, PROMPT, SUBJECT, samples=3, window=3, severed="mlp")
    for result in together:
        alone = trace(model, PROMPT, SUBJECT, kind=result.kind, samples=3, window=3,
                      severed="mlp" if result.kind == "hidden" else None)
        np.testing.assert_allclose(result.scores, alone.scores, atol=1e-6)
        assert result.corrupted_prob == pytest.approx(alone.corrupted_prob, abs=1e-6)


def test_result_labels_and_round_trip(models, tmp_path):
    result = trace(models["gpt2"], PROMPT, SUBJECT, samples=2, kind="attn")
    assert "".join(result.tokens[result.subject_start : result.subject_end]).strip() == SUBJECT
    assert result.scores.shape == (len(result.tokens), 2)
    loaded = TraceResult.load(result.save(tmp_path / "trace.json"))
    np.testing.assert_array_equal(loaded.scores, result.scores)
    assert loaded.tokens == result.tokens and loaded.settings == result.settings


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"subject": "Germany"}, SubjectNotInPromptError),
        ({"subject": ""}, SubjectNotInPromptError),
        ({"kind": "residual"}, InvalidRequestError),
        ({"severed": "mlp", "kind": "mlp"}, InvalidRequestError),
        ({"answer": "  "}, InvalidRequestError),
        ({"samples": 0}, InvalidRequestError),
    ],
)
def test_bad_input_is_refused_and_leaves_the_model_untouched(models, kwargs, error):
    model = models["gpt2"]
    ids = locate_subject(model, PROMPT, SUBJECT).input_ids
    with torch.no_grad():
        before = model(ids, return_type="logits")
    with pytest.raises(error):
        trace(model, PROMPT, **{"subject": SUBJECT, **kwargs})
    with torch.no_grad():
        assert torch.equal(model(ids, return_type="logits"), before)


@pytest.mark.parametrize("family", FAMILIES)
def test_runs_started_at_their_first_patched_block_equal_runs_from_block_0(models, family, monkeypatch):
    model = models[family]
    late = trace_kinds(model, PROMPT, SUBJECT, samples=3, window=3, severed="mlp")
    monkeypatch.setattr(batched, "LAYER_GROUPS", 1)  # one start block: every run from block 0
    early = trace_kinds(model, PROMPT, SUBJECT, samples=3, window=3, severed="mlp")
    for started_late, from_block_0 in zip(late, early):
        np.testing.assert_allclose(started_late.scores, from_block_0.scores, atol=1e-6)
