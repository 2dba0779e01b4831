"""GGUF files: converted once into a cached Hugging Face directory, checked on every use."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from gguf_files import write_gguf_of_architecture, write_tiny_llama_gguf

import workbench
from workbench import gguf
from workbench.errors import ModelNotFoundError, UnsupportedModelError
from workbench.models import cache_root

PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf"
    return path, write_tiny_llama_gguf(path)


def _transformers_gguf_load(path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                attn_implementation="eager")


def _cached(path):
    (directory,) = (cache_root() / "models").glob(f"{path.stem}-*")
    return directory


def test_a_gguf_file_loads_with_the_logits_of_transformers_own_gguf_load(tiny_gguf):
    path, tensors = tiny_gguf
    model = workbench.load_model(path)
    ids = model.tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ours, theirs = model(ids, return_type="logits"), _transformers_gguf_load(path)(ids).logits
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    # independent of both loaders: the MLP output projection holds exactly the float32 values written
    written = torch.from_numpy(tensors["blk.1.ffn_down.weight"])
    assert torch.equal(model.original_model.model.layers[1].mlp.down_proj.weight, written)
    assert gguf.verify_directory(_cached(path))


def test_the_second_load_reads_the_cache_without_converting(tiny_gguf, monkeypatch):
    path, _ = tiny_gguf
    first = workbench.load_model(path)

    def no_conversion(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(gguf, "_convert", no_conversion)
    second = workbench.load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(first.original_model.parameters(), second.original_model.parameters()))


@pytest.mark.parametrize("damage", ["truncated weights", "no manifest", "edited config"])
def test_a_damaged_cache_is_rebuilt_never_used(tiny_gguf, damage):
    path, tensors = tiny_gguf
    workbench.load_model(path)
    directory = _cached(path)
    if damage == "truncated weights":
        weights = directory / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "no manifest":
        (directory / gguf.MANIFEST).unlink()
    else:
        config = json.loads((directory / "config.json").read_text())
        (directory / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 1}))
    assert not gguf.verify_directory(directory)
    model = workbench.load_model(path)
    assert gguf.verify_directory(directory)
    assert model.cfg.n_layers == 2
    assert torch.equal(model.original_model.model.layers[0].mlp.down_proj.weight,
                       torch.from_numpy(tensors["blk.0.ffn_down.weight"]))


def test_a_leftover_staging_folder_does_not_stop_a_conversion(tiny_gguf):
    path, _ = tiny_gguf
    workbench.load_model(path)
    directory = _cached(path)
    staging = directory.with_name(f".{directory.name}.123.deadbeef.tmp")
    shutil.copytree(directory, staging)
    shutil.rmtree(directory)
    workbench.load_model(path)
    assert gguf.verify_directory(directory)


@pytest.mark.parametrize(("architecture", "reason"), [("mamba", "not a supported family"),
                                                      ("no-such-arch", "cannot read GGUF architecture")])
def test_an_unsupported_architecture_is_refused_before_any_conversion(tmp_path, architecture, reason):
    path = tmp_path / f"{architecture}.gguf"
    write_gguf_of_architecture(path, architecture)
    with pytest.raises(UnsupportedModelError, match=reason):
        workbench.load_model(path)
    assert not list((cache_root() / "models").glob(f"{architecture}-*"))


def test_a_missing_gguf_file_is_reported(tmp_path):
    with pytest.raises(ModelNotFoundError):
        workbench.load_model(tmp_path / "absent.gguf")
