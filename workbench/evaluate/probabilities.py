"""Teacher-forced probabilities of target continuations, batched.

CounterFact compares ``p(target_new)`` with ``p(target_true)`` after a prompt; for a multi-token
target the probability is the product over its tokens with the earlier target tokens fed in
(teacher forcing), which this module computes for many (prompt, target) pairs per forward pass.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float
from transformer_lens.model_bridge import TransformerBridge

from workbench.errors import InvalidRequestError
from workbench.tokens import pad_right


@dataclass(frozen=True)
class TargetScores:
    """Per (prompt, target) pair: log-probability of the whole target and its token accuracy."""

    log_prob: Float[torch.Tensor, "n"]
    """Sum over target tokens of log p(token | prompt, earlier target tokens)."""
    tokens_correct: Bool[torch.Tensor, "n"]
    """Whether every target token is the argmax given the prompt and earlier target tokens."""
    token_accuracy: Float[torch.Tensor, "n"]
    """Share of target tokens that are the argmax (what some toolkits report as 'accuracy')."""


@torch.no_grad()
def score_targets(
    model: TransformerBridge, prompts: Sequence[str], targets: Sequence[str], *, batch_size: int = 64
) -> TargetScores:
    """Score ``targets[i]`` as the continuation of ``prompts[i]`` (a space is put between them).

    Prompts get the tokenizer's BOS; sequences are right-padded, which needs no attention mask
    in a causal model because real tokens never attend to later padding.
    """
    if len(prompts) != len(targets):
        raise InvalidRequestError(f"{len(prompts)} prompts but {len(targets)} targets")
    tokenizer = model.tokenizer
    rows = []
    for prompt, target in zip(prompts, targets):
        prompt_ids = tokenizer(prompt)["input_ids"]
        target_ids = tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"]
        rows.append((prompt_ids + target_ids, len(prompt_ids)))
    log_probs, all_correct, accuracy = [], [], []
    pad = tokenizer.pad_token_id
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        input_ids = pad_right([ids for ids, _ in batch], pad, model.cfg.device)
        logits = model(input_ids, return_type="logits").float()
        log_softmax = logits.log_softmax(-1).cpu()  # [batch, pos, vocab]
        for row, (ids, target_start) in enumerate(batch):
            positions = torch.arange(target_start - 1, len(ids) - 1)
            wanted = torch.tensor(ids[target_start:])
            token_log_probs = log_softmax[row, positions, wanted]
            hits = log_softmax[row, positions].argmax(-1) == wanted
            log_probs.append(token_log_probs.sum())
            all_correct.append(bool(hits.all()))
            accuracy.append(hits.float().mean())
    return TargetScores(torch.stack(log_probs), torch.tensor(all_correct), torch.stack(accuracy))
