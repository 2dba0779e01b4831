"""Family knowledge checked against what the model actually computes."""
from __future__ import annotations

import pytest
import torch
from conftest import FAMILIES

import workbench
from workbench import families
from workbench.errors import LayerOutOfRangeError
from workbench.tokens import encode


@pytest.fixture(scope="module")
def models(tiny_model_dirs):
    return {family: workbench.load_model(path) for family, path in tiny_model_dirs.items()}


@pytest.mark.parametrize("family", FAMILIES)
def test_mlp_out_projection_computes_the_mlp_output(models, family):
    """The projection's [d_out, d_in] matrix applied to the key hook gives the module's output."""
    model = models[family]
    projection = families.mlp_out_projection(model, 1)
    captured = {}
    handle = projection.module.register_forward_hook(lambda m, i, o: captured.update(out=o))
    try:
        _, cache = model.run_with_cache(encode(model, "Rome is the capital of Italy"))
    finally:
        handle.remove()
    keys = cache[families.Hooks.mlp_key(1)]
    bias = projection.module.bias if projection.module.bias is not None else 0
    expected = keys @ projection.matrix().T + bias
    assert torch.allclose(captured["out"], expected, atol=1e-5)
    assert projection.d_in == keys.shape[-1] == model.cfg.d_mlp
    assert projection.d_out == model.cfg.d_model


@pytest.mark.parametrize("family", FAMILIES)
def test_matrix_view_writes_through_to_the_forward_pass(models, family):
    model = models[family]
    ids = encode(model, "Madrid is in")
    projection = families.mlp_out_projection(model, 0)
    with torch.no_grad():
        before = model(ids, return_type="logits")
        saved = projection.weight.detach().clone()
        projection.matrix()[0].add_(torch.randn(projection.d_in))
        after = model(ids, return_type="logits")
        projection.weight.copy_(saved)
        restored = model(ids, return_type="logits")
    assert not torch.allclose(before, after)
    assert torch.equal(before, restored)


@pytest.mark.parametrize("family", FAMILIES)
def test_embedding_and_unembedding_shapes(models, family):
    model = models[family]
    vocab = len(model.tokenizer)
    assert families.embedding(model).weight.shape == (vocab, model.cfg.d_model)
    assert families.unembedding(model).weight.shape == (vocab, model.cfg.d_model)
    assert families.n_layers(model) == 2
    assert len(families.mlp_in_projections(model, 0)) == (2 if family in ("llama", "gemma3") else 1)


def test_gpt2_is_conv1d_and_llama_is_linear(models):
    gpt2 = families.mlp_out_projection(models["gpt2"], 0)
    llama = families.mlp_out_projection(models["llama"], 0)
    assert gpt2.layout == "conv1d" and gpt2.weight.shape == (gpt2.d_in, gpt2.d_out)
    assert llama.layout == "linear" and llama.weight.shape == (llama.d_out, llama.d_in)


@pytest.mark.parametrize("layer", [-1, 2, 99, 1.0])
def test_layer_out_of_range(models, layer):
    with pytest.raises(LayerOutOfRangeError, match="0..1"):
        families.mlp_out_projection(models["gpt2"], layer)


@pytest.mark.parametrize("family", FAMILIES)
def test_running_from_a_block_equals_the_whole_model(models, family):
    model = models[family]
    ids = encode(model, "The capital of France is")
    fired = []
    with torch.no_grad():
        with families.recording_block_inputs(model) as entering:
            whole = model.original_model(ids).logits
        for first in range(families.n_layers(model)):
            hooks = [(families.Hooks.resid_post(layer), lambda a, hook, layer=layer: fired.append(layer))
                     for layer in range(families.n_layers(model))]
            with model.hooks(fwd_hooks=hooks):
                started_late = families.run_from_block(model, first, entering[first]).logits
            torch.testing.assert_close(started_late, whole, rtol=0, atol=1e-5)
            assert fired == list(range(first, families.n_layers(model)))  # the blocks run, and only those
            fired.clear()
    # the skipped blocks are back afterwards
    torch.testing.assert_close(model.original_model(ids).logits, whole, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_rows_started_at_their_own_blocks_equal_the_whole_model(models, family):
    """Rows entering different blocks in one pass, after a cached prefix, each compute what the
    whole model computes; each block's hook sees exactly the rows started at or below it."""
    model = models[family]
    ids = encode(model, "The capital of France is Paris")
    split, n_layers = 3, families.n_layers(model)
    with torch.no_grad():
        with families.recording_block_inputs(model) as entering:
            whole = model.original_model(ids).logits
        starts = [0, 0, 1, 1, 1]
        hidden = torch.cat([entering[start][:, split:] for start in starts])
        prefix = model.original_model(ids[:, :split], use_cache=True).past_key_values
        prefix.batch_repeat_interleave(len(starts))
        seen = {}
        hooks = [(families.Hooks.resid_post(layer), lambda a, hook, layer=layer: seen.update({layer: a.shape[0]}))
                 for layer in range(n_layers)]
        with model.hooks(fwd_hooks=hooks):
            staggered = families.run_from_block(model, starts, hidden, past_key_values=prefix).logits
    for row in range(len(starts)):
        torch.testing.assert_close(staggered[row], whole[0, split:], rtol=0, atol=1e-5)
    assert seen == {layer: sum(start <= layer for start in starts) for layer in range(n_layers)}
    torch.testing.assert_close(model.original_model(ids).logits, whole, rtol=0, atol=0)


@pytest.mark.parametrize("starts", [[1, 0], [], [0, 2]])
def test_start_blocks_out_of_order_or_range_are_refused(models, starts):
    model = models["llama"]
    hidden = torch.zeros(len(starts), 2, model.cfg.d_model)
    with pytest.raises((ValueError, LayerOutOfRangeError)):
        families.run_from_block(model, starts, hidden)
