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
    in a causal model because real tokens never attend to later padding. A pair is scored from
    the logits of ``prompt + target`` without its last token, and pairs needing the same input
    share one row: every single-token target of a prompt is scored from the prompt alone, so
    scoring two such targets per prompt (CounterFact's new and true objects) costs one row.
    Rows are sorted by length, so batches carry little padding; ``batch_size`` counts rows. Only
    the scored positions are projected onto the vocabulary.
    """
    if len(prompts) != len(targets):
        raise InvalidRequestError(f"{len(prompts)} prompts but {len(targets)} targets")
    tokenizer = model.tokenizer
    prompt_tokens = {prompt: tokenizer(prompt)["input_ids"] for prompt in set(prompts)}
    target_tokens = {target: tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"]
                     for target in set(targets)}
    if not all(target.strip() and target_tokens[target] for target in target_tokens):
        raise InvalidRequestError("a target is empty; every target needs at least one token to score")
    pairs = []  # (input ids, first scored position, target ids)
    for prompt, target in zip(prompts, targets):
        prompt_ids, target_ids = prompt_tokens[prompt], target_tokens[target]
        pairs.append((tuple(prompt_ids + target_ids[:-1]), len(prompt_ids) - 1, target_ids))
    inputs = sorted({ids for ids, _, _ in pairs}, key=len)
    row_of = {ids: row for row, ids in enumerate(inputs)}
    wanted_by_row: dict[int, list[int]] = {}
    for pair_index, (ids, _, _) in enumerate(pairs):
        wanted_by_row.setdefault(row_of[ids], []).append(pair_index)

    # per pair, on the model's device until the end: [log p of the target, all tokens argmax, share argmax]
    scores: list[torch.Tensor] = [torch.empty(0)] * len(pairs)
    for start in range(0, len(inputs), batch_size):
        batch = [list(ids) for ids in inputs[start : start + batch_size]]
        input_ids = pad_right(batch, tokenizer.pad_token_id, model.cfg.device)
        # unembed only the scored positions: the logits come back flattened in row-major order
        keep = torch.zeros_like(input_ids, dtype=torch.bool)
        for offset in range(len(batch)):
            for pair_index in wanted_by_row[start + offset]:
                _, first, target_ids = pairs[pair_index]
                keep[offset, first : first + len(target_ids)] = True
        flat_index = torch.full(keep.shape, -1, dtype=torch.long, device=keep.device)
        flat_index[keep] = torch.arange(int(keep.sum()), device=keep.device)
        logits = model(input_ids, return_type="logits", logits_to_keep=keep)  # [kept, vocab]
        for offset in range(len(batch)):
            for pair_index in wanted_by_row[start + offset]:
                _, first, target_ids = pairs[pair_index]
                kept = flat_index[offset, first : first + len(target_ids)]
                scored = logits[kept].float().log_softmax(-1)  # [target, vocab]
                wanted = torch.tensor(target_ids, device=scored.device)
                hits = (scored.argmax(-1) == wanted).float()
                log_prob = scored.gather(-1, wanted[:, None]).sum()
                scores[pair_index] = torch.stack([log_prob, hits.min(), hits.mean()])
    table = torch.stack(scores).cpu() if scores else torch.empty(0, 3)  # [pairs, 3]
    log_probs, all_correct, accuracy = table[:, 0], table[:, 1].bool(), table[:, 2]
    return TargetScores(log_probs, all_correct, accuracy)
