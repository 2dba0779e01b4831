"""A model split by a device map (here: blocks on the CPU and one block offloaded to disk) traces,
attributes and edits exactly as the same model on one device; what cannot work is refused."""
from __future__ import annotations

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench.errors import InvalidRequestError
from workbench.zoo.tiny import build_tiny_model

PROMPT, SUBJECT = "The capital of France is", "France"
OFFLOADED_LAYER = 1


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The same tiny Llama twice: whole on the CPU, and with block 1 offloaded to disk."""
    root = tmp_path_factory.mktemp("placement")
    path = build_tiny_model("llama", root / "llama", n_layers=3)
    device_map = {"model.embed_tokens": "cpu", "model.rotary_emb": "cpu", "model.layers.0": "cpu",
                  f"model.layers.{OFFLOADED_LAYER}": "disk", "model.layers.2": "cpu", "model.norm": "cpu",
                  "lm_head": "cpu"}
    split = workbench.load_model(path, device_map=device_map, offload_folder=root / "offload")
    return split, workbench.load_model(path)


def test_the_offloaded_block_holds_no_weights_but_reads_its_values(models):
    split, whole = models
    offloaded = split.original_model.model.layers[OFFLOADED_LAYER].mlp.down_proj.weight
    assert offloaded.device.type == "meta"  # so every check below goes through the offload hooks
    assert changed(split, snapshot(whole)) == set()  # the state read back equals the whole model's
    ids = whole.to_tokens(PROMPT)
    assert torch.equal(split(ids), whole(ids))


def test_tracing_and_attribution_match_the_whole_model(models):
    split, whole = models
    traced = [workbench.trace(model, PROMPT, SUBJECT, kind="mlp", samples=2) for model in models]
    assert torch.allclose(torch.as_tensor(traced[0].scores), torch.as_tensor(traced[1].scores), atol=1e-6)
    scores = [workbench.attribute(model, PROMPT, steps=4).attributions for model in models]
    assert torch.allclose(torch.as_tensor(scores[0]), torch.as_tensor(scores[1]), atol=1e-6)


@pytest.mark.parametrize("method, layer", [("rome", OFFLOADED_LAYER), ("memit", [0, OFFLOADED_LAYER])])
def test_an_edit_of_the_offloaded_block_equals_the_whole_models_and_restores(models, editing_corpus, method, layer):
    split, whole = models
    before = snapshot(split)
    ids = whole.to_tokens(PROMPT)
    options = {"prompt": PROMPT, "subject": SUBJECT, "target": "Rome", "method": method, "layer": layer,
               "check_targets": False, "v_steps": 5, "mom2_n_samples": 200, "prefixes": ((3, 2),)}
    with workbench.edit(split, **options) as on_split, workbench.edit(whole, **options) as on_whole:
        assert f"model.layers.{OFFLOADED_LAYER}.mlp.down_proj.weight" in on_split.deltas
        for name, delta in on_whole.deltas.items():
            assert torch.allclose(on_split.deltas[name], delta, atol=1e-6), name
        assert torch.allclose(split(ids), whole(ids), atol=1e-5)
        assert changed(split, before) == set(on_split.deltas)
    assert changed(split, before) == set()  # restored bit-exactly, offloaded weight included


def test_fine_tuning_an_offloaded_layer_is_refused_and_changes_nothing(models):
    split, _ = models
    before = snapshot(split)
    with pytest.raises(InvalidRequestError, match="offloaded"):
        workbench.edit(split, prompt=PROMPT, subject=SUBJECT, target="Rome", method="ft", layer=OFFLOADED_LAYER,
                       check_targets=False)
    assert changed(split, before) == set()


@pytest.mark.parametrize("options, message", [
    ({"device": "cpu", "device_map": "auto"}, "either device"),
    ({"max_memory": {"cpu": "1GiB"}}, "give device_map"),
    ({"offload_folder": "offload"}, "give device_map"),
])
def test_contradictory_placements_are_refused(options, message):
    with pytest.raises(InvalidRequestError, match=message):
        workbench.load_model("factgpt", **options)
