"""Causal tracing checked against invariants that hold for any model, on every family."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import FAMILIES

import workbench
from workbench import families
from workbench.errors import InvalidRequestError, SubjectNotInPromptError
from workbench.locate.tracing import TraceResult, restored_layers, trace, trace_kinds
from workbench.tokens import locate_subject
from workbench.zoo.tiny import build_tiny_model

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


def _naive_restoration(model, prompt, subject, noise, hook_names, token):
    """One restoration (of the states at ``hook_names``, a name or a list), written independently
    of the batched runner: the whole prompt, every block, one forward pass."""
    hook_names = [hook_names] if isinstance(hook_names, str) else hook_names
    span = locate_subject(model, prompt, subject)
    _, cache = model.run_with_cache(span.input_ids)

    def corrupt(embeddings, hook):
        embeddings[:, span.start : span.end] += noise
        return embeddings

    def restore(activation, hook):
        activation[:, token] = cache[hook.name][0, token]
        return activation

    with torch.no_grad():
        logits = model.run_with_hooks(span.input_ids.expand(len(noise), -1), return_type="logits",
                                      fwd_hooks=[("hook_embed", corrupt)] + [(name, restore) for name in hook_names])
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
def test_every_cell_of_a_deeper_model_equals_one_naive_pass_per_cell(family, tmp_path):
    """Five blocks and a window of 3: rows of one pass start at five different blocks (windows from
    their first layer, hidden states from their own); every cell of every kind equals a naive
    full forward pass with the same noise."""
    model = workbench.load_model(build_tiny_model(family, tmp_path / family, n_layers=5, seed=1))
    results = trace_kinds(model, PROMPT, SUBJECT, samples=2, window=3, seed=5, noise=5.0)
    span = locate_subject(model, PROMPT, SUBJECT)
    generator = torch.Generator().manual_seed(5)
    noise = torch.randn((2, span.end - span.start, model.cfg.d_model), generator=generator)
    noise *= results[0].settings["noise_scale"]
    hooks = {"hidden": families.Hooks.resid_post, "mlp": families.Hooks.mlp_out, "attn": families.Hooks.attn_out}
    for result in results:
        width = result.settings["window"]
        for token in range(span.start, span.input_ids.shape[1]):
            for layer in range(5):
                names = [hooks[result.kind](restored) for restored in restored_layers(layer, 5, width)]
                expected = _naive_restoration(model, PROMPT, SUBJECT, noise, names, token)[:, result.answer_id].mean()
                assert result.scores[token, layer] == pytest.approx(expected.item(), rel=1e-5, abs=1e-7), \
                    (result.kind, token, layer)
    assert len({round(float(v), 6) for v in results[1].scores[span.start:].ravel()}) > 5  # cells differ


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_started_at_different_blocks_in_one_pass_equal_each_run_alone(models, family):
    """Windows and severed runs put rows with different first blocks into one staggered pass; with a
    memory budget of one byte every cell runs alone."""
    model = models[family]
    together = trace_kinds(model, PROMPT, SUBJECT, samples=3, window=3, severed="mlp")
    alone = trace_kinds(model, PROMPT, SUBJECT, samples=3, window=3, severed="mlp", memory_budget=1)
    for in_one_pass, by_itself in zip(together, alone):
        np.testing.assert_allclose(in_one_pass.scores, by_itself.scores, atol=1e-6)


def test_bfloat16_trace_stays_near_the_float32_one_and_bad_dtypes_are_refused(models):
    model = models["llama"]
    exact = trace_kinds(model, PROMPT, SUBJECT, samples=3, window=3, noise=5.0)
    reduced = trace_kinds(model, PROMPT, SUBJECT, samples=3, window=3, noise=5.0, dtype="bfloat16")
    for full, half in zip(exact, reduced):
        assert half.settings["dtype"] == "bfloat16" and full.settings["dtype"] == "float32"
        assert not np.array_equal(full.scores, half.scores)  # the products really ran in bfloat16
        np.testing.assert_allclose(half.scores, full.scores, atol=2e-2 * max(1.0, full.scores.max()))
    with pytest.raises(InvalidRequestError, match="float16"):
        trace(model, PROMPT, SUBJECT, samples=2, dtype="float16")
