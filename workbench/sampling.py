"""Top-k sampling of continuations, many prompts in one batch with the KV cache.

Used for ROME's and MEMIT's context prefixes (Meng et al. 2022, 2023: short texts sampled from the
model) and for the fluency of generations (ROME's evaluation). Prompts of different lengths are
left-padded with an attention mask and explicit position ids, so each continues as it would alone
(up to float rounding); each step runs one new token per prompt against the cached keys and values.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Int
from transformer_lens.model_bridge import TransformerBridge

from workbench.tokens import pad_left


@torch.no_grad()
def sample_top_k(
    model: TransformerBridge,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    top_k: int = 5,
    generator: torch.Generator,
) -> Int[torch.Tensor, "n max_new_tokens"]:
    """``max_new_tokens`` tokens sampled after each prompt (token ids, at least one each) from the
    ``top_k`` most likely next tokens, renormalised; end-of-text tokens are sampled through."""
    if any(len(prompt) == 0 for prompt in prompts):
        raise ValueError("every prompt needs at least one token (e.g. BOS)")
    device = model.cfg.device
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    ids, mask = pad_left(prompts, pad, device)
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    new_tokens = []
    cache = None
    for step in range(max_new_tokens):
        last = torch.zeros_like(ids, dtype=torch.bool)
        last[:, -1] = True  # a boolean mask: the vocabulary projection of [n, d] rather than [n, 1, d]
        logits, cache = model(ids, return_type="logits_and_cache", past_key_values=cache, attention_mask=mask,
                              position_ids=positions, logits_to_keep=last)  # [n, vocab]
        top = logits.float().cpu().topk(top_k, dim=-1)
        choice = torch.multinomial(top.values.softmax(-1), 1, generator=generator)
        ids = top.indices.gather(1, choice).to(device)  # [n, 1]
        new_tokens.append(ids)
        mask = torch.cat([mask, torch.ones_like(ids)], dim=1)
        positions = positions[:, -1:] + 1
    return torch.cat(new_tokens, dim=1) if new_tokens else torch.zeros(len(prompts), 0, dtype=torch.long)
