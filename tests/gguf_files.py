"""Small GGUF files written by the tests themselves with the ``gguf`` package (llama.cpp's writer).

:func:`write_tiny_llama_gguf` writes a randomly initialised 2-layer Llama in float32 with the
bundled fact model's byte-level BPE vocabulary; :func:`write_gguf_of_architecture` writes a header
naming any architecture (for the refusal tests). Seeded, so two calls write the same weights.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TOKENIZER_JSON = Path(__file__).parents[1] / "workbench" / "zoo" / "factgpt" / "tokenizer.json"
D_MODEL, D_MLP, N_LAYERS, N_HEADS, N_KV_HEADS = 64, 128, 2, 4, 2


def _add_tokenizer(writer) -> None:
    model = json.loads(TOKENIZER_JSON.read_text())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if token == "<|endoftext|>" else 1 for token in tokens])
    writer.add_token_merges([" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(0)


def write_tiny_llama_gguf(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Write the model to ``path``; return its tensors under their GGUF names ([out, in] layouts)."""
    import gguf

    rng = np.random.default_rng(seed)
    vocab = len(json.loads(TOKENIZER_JSON.read_text())["model"]["vocab"])
    head = D_MODEL // N_HEADS

    def matrix(rows: int, columns: int) -> np.ndarray:
        return (rng.standard_normal((rows, columns)) * 0.2).astype(np.float32)

    tensors = {"token_embd.weight": matrix(vocab, D_MODEL), "output_norm.weight": np.ones(D_MODEL, np.float32)}
    for layer in range(N_LAYERS):
        block = f"blk.{layer}."
        tensors |= {
            block + "attn_norm.weight": (1 + 0.1 * rng.standard_normal(D_MODEL)).astype(np.float32),
            block + "attn_q.weight": matrix(N_HEADS * head, D_MODEL),
            block + "attn_k.weight": matrix(N_KV_HEADS * head, D_MODEL),
            block + "attn_v.weight": matrix(N_KV_HEADS * head, D_MODEL),
            block + "attn_output.weight": matrix(D_MODEL, N_HEADS * head),
            block + "ffn_norm.weight": (1 + 0.1 * rng.standard_normal(D_MODEL)).astype(np.float32),
            block + "ffn_gate.weight": matrix(D_MLP, D_MODEL),
            block + "ffn_up.weight": matrix(D_MLP, D_MODEL),
            block + "ffn_down.weight": matrix(D_MODEL, D_MLP),
        }
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny-llama")
    writer.add_context_length(128)
    writer.add_embedding_length(D_MODEL)
    writer.add_block_count(N_LAYERS)
    writer.add_feed_forward_length(D_MLP)
    writer.add_head_count(N_HEADS)
    writer.add_head_count_kv(N_KV_HEADS)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    _add_tokenizer(writer)
    for name, tensor in tensors.items():
        writer.add_tensor(name, tensor)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


def write_gguf_of_architecture(path: Path, architecture: str) -> None:
    """A GGUF file whose header names ``architecture`` and holds one small tensor."""
    import gguf

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
