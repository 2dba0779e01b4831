"""load_model / save_model on tiny models of every family, offline."""
from __future__ import annotations

import socket

import pytest
import torch
from conftest import FAMILIES, NetworkBlockedError
from transformers import AutoModelForCausalLM, OPTConfig, OPTForCausalLM

import workbench
from workbench import families
from workbench.errors import ModelNotFoundError, UnsupportedModelError
from workbench.tokens import encode

PROMPT = "The capital of France is Paris. Rome is"


def test_network_is_blocked_in_tests():
    with pytest.raises(NetworkBlockedError):
        socket.create_connection(("huggingface.co", 443), timeout=1)


@pytest.mark.parametrize("family", FAMILIES)
def test_load_model_reproduces_hf_logits(tiny_model_dirs, family):
    model = workbench.load_model(tiny_model_dirs[family])
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family], attn_implementation="eager").eval()
    ids = encode(model, PROMPT)
    with torch.no_grad():
        expected = reference(ids).logits
        actual = model(ids, return_type="logits")
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max().item() < 1e-4


@pytest.mark.parametrize("family", FAMILIES)
def test_save_model_round_trip_keeps_edited_weights(tiny_model_dirs, tmp_path, family):
    model = workbench.load_model(tiny_model_dirs[family])
    torch.manual_seed(0)
    with torch.no_grad():  # a random change: a constant one would be cancelled by LayerNorm
        matrix = families.mlp_out_projection(model, 1).matrix()
        matrix.add_(torch.randn_like(matrix))
    ids = encode(model, PROMPT)
    with torch.no_grad():
        edited = model(ids, return_type="logits")
    workbench.save_model(model, tmp_path / "saved")
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "saved", attn_implementation="eager").eval()
    original = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family], attn_implementation="eager").eval()
    with torch.no_grad():
        assert (reloaded(ids).logits - edited).abs().max().item() < 1e-4
        # the edit is really in the saved file, not a coincidence of unchanged weights
        assert (original(ids).logits - edited).abs().max().item() > 1e-3


def test_saved_model_loads_again_through_the_bridge(tiny_model_dirs, tmp_path):
    model = workbench.load_model(tiny_model_dirs["gpt2"])
    workbench.save_model(model, tmp_path / "again")
    again = workbench.load_model(tmp_path / "again")
    ids = encode(model, PROMPT)
    with torch.no_grad():
        assert torch.equal(model(ids, return_type="logits"), again(ids, return_type="logits"))


def test_unknown_name_says_where_it_looked():
    with pytest.raises(ModelNotFoundError) as error:
        workbench.load_model("no-such-org/no-such-model-xyz")
    message = str(error.value)
    assert "no-such-org/no-such-model-xyz" in message
    assert "local directory" in message and "cache" in message


def test_missing_local_directory_is_named(tmp_path):
    missing = tmp_path / "nothing-here"
    with pytest.raises(ModelNotFoundError, match="nothing-here"):
        workbench.load_model(missing)


def test_unsupported_family_is_refused_before_loading_weights(tmp_path):
    config = OPTConfig(num_hidden_layers=1, hidden_size=16, num_attention_heads=2, ffn_dim=32,
                       vocab_size=50, word_embed_proj_dim=16, max_position_embeddings=32)
    OPTForCausalLM(config).save_pretrained(tmp_path / "opt")
    with pytest.raises(UnsupportedModelError, match="opt"):
        workbench.load_model(tmp_path / "opt")


def test_the_bundled_model_is_told_apart_from_others(tiny_model_dirs, tmp_path):
    from workbench.models import record_of
    from workbench.zoo.records import RECORDS

    assert record_of(workbench.load_model("factgpt")).name == "factgpt"
    assert record_of(workbench.load_model(str(RECORDS["factgpt"].folder))).name == "factgpt"
    assert record_of(workbench.load_model(tiny_model_dirs["gpt2"])) is None
    # a saved copy keeps its record (an edited factgpt is still factgpt's kind of model)
    copy = workbench.save_model(workbench.load_model("factgpt"), tmp_path / "copy")
    assert record_of(workbench.load_model(str(copy))).name == "factgpt"
