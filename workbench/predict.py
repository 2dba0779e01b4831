"""Next-token predictions of a hooked model: top-k candidates and greedy completions."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformer_lens.model_bridge import TransformerBridge

from workbench.tokens import encode


@dataclass(frozen=True)
class Prediction:
    """One candidate next token and its probability."""

    token: str
    probability: float


@torch.no_grad()
def top_predictions(model: TransformerBridge, prompt: str, k: int = 5) -> list[Prediction]:
    """The ``k`` most probable next tokens after ``prompt``."""
    logits = model(encode(model, prompt), return_type="logits")[0, -1]
    probabilities = logits.float().softmax(-1)
    values, indices = probabilities.topk(k)
    return [
        Prediction(model.tokenizer.decode([int(i)]), float(p)) for p, i in zip(values, indices)
    ]


@torch.no_grad()
def greedy_completion(model: TransformerBridge, prompt: str, max_new_tokens: int = 8) -> str:
    """Greedy continuation of ``prompt`` (no sampling), stopping at the end-of-text token."""
    ids = encode(model, prompt)
    start = ids.shape[1]
    for _ in range(max_new_tokens):
        next_id = model(ids, return_type="logits")[0, -1].argmax()
        if next_id.item() == model.tokenizer.eos_token_id:
            break
        ids = torch.cat([ids, next_id.view(1, 1)], dim=1)
    return model.tokenizer.decode(ids[0, start:])
