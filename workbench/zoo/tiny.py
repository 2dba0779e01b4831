"""Tiny randomly initialised models of every supported family, built locally.

They exercise the loading, hooking and editing code on each architecture without any download:
the tests build one per family, and the main job falls back to one when the bundled fact model
is missing. Their predictions are meaningless.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPTJConfig,
    GPTNeoXConfig,
    LlamaConfig,
    PretrainedConfig,
)

from workbench.errors import UnsupportedModelError
from workbench.zoo.tokenizer import train_tokenizer

TINY_CORPUS = (
    "The capital of France is Paris. The capital of Germany is Berlin. "
    "Rome is the capital of Italy. Madrid is in Spain. Oxygen has the symbol O."
)


def tiny_config(family: str, vocab_size: int, n_layers: int = 2) -> PretrainedConfig:
    """A config of ``family`` ("gpt2", "gpt-neox", "gpt-j", "llama", "gemma3") with d_model 32 and 4 heads."""
    width = {"n_layer": n_layers, "n_embd": 32, "n_head": 4, "vocab_size": vocab_size, "n_positions": 128}
    rotary = {
        "num_hidden_layers": n_layers,
        "hidden_size": 32,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "vocab_size": vocab_size,
        "max_position_embeddings": 128,
    }
    builders = {
        "gpt2": lambda: GPT2Config(**width),
        "gpt-neox": lambda: GPTNeoXConfig(**rotary),
        "gpt-j": lambda: GPTJConfig(**width, rotary_dim=4),
        "llama": lambda: LlamaConfig(**rotary, num_key_value_heads=2),
        # a sliding window shorter than the tests' prompts, so both attention kinds are exercised
        "gemma3": lambda: Gemma3TextConfig(**rotary, num_key_value_heads=2, head_dim=8, sliding_window=4,
                                           layer_types=["sliding_attention", "full_attention"] * (n_layers // 2)
                                           + ["sliding_attention"] * (n_layers % 2)),
    }
    if family not in builders:
        raise UnsupportedModelError(f"no tiny config for family {family!r}; choose one of {sorted(builders)}")
    return builders[family]()


def build_tiny_model(family: str, path: str | os.PathLike, *, seed: int = 0, n_layers: int = 2) -> Path:
    """Build a randomly initialised ``family`` model with a small BPE tokenizer and save it at ``path``."""
    tokenizer = train_tokenizer([TINY_CORPUS], vocab_size=300)
    config = tiny_config(family, vocab_size=len(tokenizer), n_layers=n_layers)
    config.bos_token_id = config.eos_token_id = config.pad_token_id = tokenizer.eos_token_id
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    path = Path(path)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
