"""FFN layers read as key-value memories (Geva et al. 2021, "Transformer Feed-Forward Layers Are
Key-Value Memories"; Geva et al. 2022, "... Build Predictions by Promoting Concepts").

Neuron i of layer l has a *key*, the row of the MLP input projection whose dot product with the
residual stream sets the neuron's activation, and a *value*, the column of the output
projection that the activation scales and adds to the residual stream. Reading the value through
the unembedding shows which tokens the neuron promotes and suppresses; running a corpus shows
which prompts activate its key most.

For gated MLPs (Llama-style) the activation is act(gate . x) * (up . x): both rows are returned
as keys. Limits: the value is read through the unembedding directly, without the final norm
(as in Geva et al.), which ignores the norm's per-dimension scale.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.capture import activation_until
from workbench.errors import InvalidRequestError
from workbench.results import JsonResult
from workbench.tokens import length_batches, pad_right


@dataclass(repr=False)
class Memory(JsonResult):
    """One FFN neuron as a key-value memory."""

    layer: int
    neuron: int
    keys: dict
    """input projection name -> ``[d_model]`` key row."""
    value: np.ndarray
    """``[d_model]`` value vector (column of the output projection)."""
    promoted: list
    """(token, logit contribution) pairs the value raises most."""
    suppressed: list
    """(token, logit contribution) pairs the value lowers most."""
    top_prompts: list
    """(text, token where the activation peaks, activation) of the most activating texts."""


def memory(
    model: TransformerBridge, layer: int, neuron: int, *, k: int = 10, corpus: Sequence[str] = (),
    batch_size: int = 64,
) -> Memory:
    """The key, value, promoted/suppressed tokens and most activating texts of one neuron.

    ``corpus``: texts to find the most activating ones in (empty: skipped); a bundled model's
    statistics corpus is ``workbench.models.record_of(model).corpus_texts()``.
    """
    out = families.mlp_out_projection(model, layer)
    if not 0 <= neuron < out.d_in:
        raise InvalidRequestError(f"neuron {neuron} out of range: layer {layer} has {out.d_in} neurons")
    value = out.matrix()[:, neuron].detach().float()  # [d_model]
    keys = {p.name: p.matrix()[neuron].detach().float().cpu().numpy() for p in families.mlp_in_projections(model, layer)}
    logits = families.unembedding(model).weight.detach().float() @ value  # [d_vocab]
    decode = model.tokenizer.decode
    order = torch.argsort(logits, descending=True)
    promoted = [(decode([int(i)]), float(logits[i])) for i in order[:k]]
    suppressed = [(decode([int(i)]), float(logits[i])) for i in order.flip(0)[:k]]
    return Memory(layer, neuron, keys, value.cpu().numpy(), promoted, suppressed,
                  _top_activating(model, layer, neuron, corpus, k, batch_size))


@torch.no_grad()
def _top_activating(model, layer, neuron, corpus, k, batch_size) -> list:
    """The ``k`` texts whose largest activation of the neuron is highest, with the token where it is.
    Special tokens (the BOS token every text starts with) are not counted: their activation is the
    same in every text. Texts are cut at the context length and batched by token length
    (:func:`workbench.tokens.length_batches`); each pass stops at the layer."""
    hook = families.Hooks.mlp_key(layer)
    best: list[tuple[float, str, str]] = []
    pad, special = model.tokenizer.pad_token_id, set(model.tokenizer.all_special_ids)
    encoded = [model.tokenizer(text, truncation=True, max_length=model.cfg.n_ctx)["input_ids"] for text in corpus]
    for rows in length_batches([len(ids) for ids in encoded], batch_size):
        ids = pad_right([encoded[i] for i in rows], pad, model.cfg.device)
        activations = activation_until(model, ids, hook)[..., neuron].float()  # [batch, pos]
        for row, index in enumerate(rows):
            counted = torch.tensor([token not in special for token in encoded[index]], device=activations.device)
            if not counted.any():
                continue
            position = int(activations[row, : len(encoded[index])].masked_fill(~counted, -torch.inf).argmax())
            best.append((float(activations[row, position]), corpus[index], model.tokenizer.decode([encoded[index][position]])))
        best = sorted(best, reverse=True)[:k]
    return [(text, token, activation) for activation, text, token in best]
