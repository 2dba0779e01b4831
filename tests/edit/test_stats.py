"""Second moments: definition, symmetry, positive semi-definiteness, caching and corruption."""
from __future__ import annotations

import pytest
import torch

import workbench
from workbench import families
from workbench.edit.stats import (
    accumulate_second_moment,
    growing_second_moments,
    second_moment,
    second_moments,
    using_corpus,
)

TEXTS = ["The capital of France is Paris", "Rome is the capital of Italy", "Oxygen has the symbol O"] * 3


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["llama"])


def test_matches_the_definition_on_every_token(model):
    total, count = accumulate_second_moment(model, 1, TEXTS, batch_size=2, progress=False)
    keys = []
    for text in TEXTS:  # independent: one text at a time, through the cache
        _, cache = model.run_with_cache(model.tokenizer(text, return_tensors="pt")["input_ids"])
        keys.append(cache[families.Hooks.mlp_key(1)][0].double())
    keys = torch.cat(keys)
    assert count == keys.shape[0]
    # float32 activations differ in the last bits between batched and single runs
    torch.testing.assert_close(total, keys.T @ keys, rtol=1e-4, atol=1e-6)


def test_several_layers_in_one_pass_equal_each_layer_alone(model, tmp_path):
    together = second_moments(model, [1, 0], TEXTS, cache_dir=tmp_path, progress=False)
    assert sorted(together) == [0, 1] and len(list(tmp_path.glob("*.safetensors"))) == 2
    for layer in (0, 1):
        alone = second_moment(model, layer, TEXTS, cache_dir=None, progress=False)
        torch.testing.assert_close(together[layer], alone, rtol=1e-6, atol=1e-9)
        assert torch.equal(second_moment(model, layer, TEXTS, cache_dir=tmp_path, progress=False), together[layer])


def test_growing_samples_equal_each_sample_computed_alone_and_are_cached_as_such(model, tmp_path):
    grown = list(growing_second_moments(model, [0, 1], TEXTS, [2, 5, 9], corpus_name="probe", cache_dir=tmp_path,
                                        progress=False))
    assert [size for size, _ in grown] == [2, 5, 9]
    for size, moments in grown:
        alone = second_moments(model, [0, 1], TEXTS[:size], cache_dir=None, progress=False)
        for layer in (0, 1):
            torch.testing.assert_close(moments[layer], alone[layer], rtol=1e-5, atol=1e-8)
            cached = second_moment(model, layer, TEXTS, corpus_name="probe", n_samples=size, cache_dir=tmp_path,
                                   progress=False)  # read back, not recomputed
            assert torch.equal(cached, moments[layer])


def test_symmetric_positive_semidefinite_float64(model, tmp_path):
    moment = second_moment(model, 0, TEXTS, cache_dir=tmp_path, progress=False)
    assert moment.dtype == torch.float64
    torch.testing.assert_close(moment, moment.T, rtol=0, atol=0)
    assert torch.linalg.eigvalsh(moment).min() > -1e-10


def test_cache_is_reused_and_keyed_by_corpus(model, tmp_path):
    first = second_moment(model, 0, TEXTS, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    assert torch.equal(second_moment(model, 0, TEXTS, cache_dir=tmp_path, progress=False), first)
    second_moment(model, 0, TEXTS[:2], cache_dir=tmp_path, progress=False)
    second_moment(model, 1, TEXTS, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_cache_is_recomputed_not_used(model, tmp_path, damage):
    expected = second_moment(model, 0, TEXTS, cache_dir=tmp_path, progress=False)
    (path,) = tmp_path.glob("*.safetensors")
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[-3] ^= 0x01  # a bit of the tensor payload
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))
    again = second_moment(model, 0, TEXTS, cache_dir=tmp_path, progress=False)
    assert torch.equal(again, expected)


def test_cache_changes_when_weights_change(model, tmp_path):
    second_moment(model, 0, TEXTS, cache_dir=tmp_path, progress=False)
    projection = families.mlp_in_projections(model, 0)[0]
    saved = projection.weight.detach().clone()
    with torch.no_grad():
        projection.weight.add_(0.1)
    try:
        second_moment(model, 0, TEXTS, cache_dir=tmp_path, progress=False)
    finally:
        with torch.no_grad():
            projection.weight.copy_(saved)
    assert len(list(tmp_path.glob("*.safetensors"))) == 2


def test_using_corpus_sets_the_editors_corpus_and_a_singular_moment_is_explained(tiny_model_dirs, tmp_path):
    from weights_snapshot import changed, snapshot

    from workbench.data import EditRequest
    from workbench.edit.stats import using_corpus
    from workbench.errors import InvalidRequestError

    model = workbench.load_model(tiny_model_dirs["gpt2"])
    texts = ["The capital of France is Paris.", "Rome is a city in Italy."]
    with using_corpus(texts):
        inside = second_moment(model, 0, cache_dir=None, progress=False)
    torch.testing.assert_close(inside, second_moment(model, 0, texts, cache_dir=None, progress=False))
    with using_corpus(texts[:1]):
        assert not torch.equal(inside, second_moment(model, 0, cache_dir=None, progress=False))
    before = snapshot(model)
    with using_corpus(["one short text"]), pytest.raises(InvalidRequestError, match="singular"):
        workbench.edit(model, EditRequest("The capital of {} is", "France", "Rome"), layer=0, v_steps=2,
                       prefixes=((2, 1),))
    assert changed(model, before) == set()


def test_stopping_the_pass_at_the_layer_leaves_no_hook_behind(model):
    from workbench.tokens import encode

    def hooks():
        return {name: len(module._forward_hooks) for name, module in model.named_modules()}

    ids = encode(model, "The capital of France is")
    before, hooks_before = model(ids, return_type="logits"), hooks()
    accumulate_second_moment(model, 0, ["Paris is a city in France.", "Rome is a city in Italy."])
    assert torch.equal(model(ids, return_type="logits"), before)
    assert hooks() == hooks_before


def test_without_a_corpus_statistics_are_refused_and_the_corpus_name_keys_the_cache(model, tmp_path):
    from workbench.errors import InvalidRequestError

    with pytest.raises(InvalidRequestError, match="no statistics corpus"):
        second_moment(model, 0, cache_dir=tmp_path)
    with using_corpus(TEXTS, "first-name"):
        named = second_moment(model, 0, cache_dir=tmp_path)
    with using_corpus(TEXTS, "second-name"):
        renamed = second_moment(model, 0, cache_dir=tmp_path)
    assert torch.equal(named, renamed)  # same texts, same moment, two cache entries named after their corpus
    assert sorted(p.name.split("_layer")[0] for p in tmp_path.glob("*.safetensors")) == [
        "second_moment_first-name", "second_moment_second-name"]
    with pytest.raises(InvalidRequestError, match="corpus name"):
        with using_corpus(TEXTS, "../escape"):
            pass

def test_fingerprint_follows_every_in_place_change(model, tiny_model_dirs):
    from workbench.edit.stats import weights_fingerprint

    twin = workbench.load_model(tiny_model_dirs["llama"])  # the truth: the same weights loaded anew
    original = weights_fingerprint(model)
    assert weights_fingerprint(twin) == original
    parameter = families.mlp_out_projection(model, 1).weight
    saved = parameter.detach().clone()
    with torch.no_grad():
        parameter[0, 0] += 1.0
    changed = weights_fingerprint(model)
    assert changed != original
    with torch.no_grad():
        parameter.copy_(saved)
    assert weights_fingerprint(model) == original == weights_fingerprint(twin)
