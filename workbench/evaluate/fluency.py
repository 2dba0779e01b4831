"""Fluency of generations: ROME's weighted bi- and tri-gram entropy (Meng et al. 2022, appendix).

An edit that makes the model repeat itself ("Rome Rome Rome ...") lowers the entropy of the
n-gram distribution of its generations. The score of one text is (2/3 * H2 + 4/3 * H3) / 2 with
H_n the entropy (bits) of the frequency distribution of its word n-grams; a set of generations
scores the mean over texts.

Generations are sampled with top-k sampling from a seeded generator, so they are reproducible
(all prompts of a call in one batch, so a prompt's text depends on the batch it is sampled in).
Limits: words are split on whitespace (the reference uses NLTK's tokenizer); the bundled fact
model produces fact-like sentences, so its absolute fluency is not comparable to GPT-2 XL's.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import torch
from transformer_lens.model_bridge import TransformerBridge

from workbench.sampling import sample_top_k


def ngram_entropy(text: str, ns: Sequence[int] = (2, 3), weights: Sequence[float] = (2 / 3, 4 / 3)) -> float:
    """Weighted mean entropy (bits) of the word n-gram distributions of ``text``."""
    words = text.split()
    entropies = []
    for n in ns:
        grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
        total = sum(grams.values())
        entropies.append(-sum(c / total * math.log2(c / total) for c in grams.values()) if total else 0.0)
    return sum(w * e for w, e in zip(weights, entropies)) / len(ns)


def generate(
    model: TransformerBridge, prompts: Sequence[str], *, max_new_tokens: int = 30, top_k: int = 5, seed: int = 0
) -> list[str]:
    """Top-k sampled continuations of ``prompts``, ``max_new_tokens`` tokens each (end-of-text
    tokens are sampled through), all prompts in one batch (:func:`workbench.sampling.sample_top_k`)."""
    encoded = [model.tokenizer(p)["input_ids"] for p in prompts]
    tokens = sample_top_k(model, encoded, max_new_tokens, top_k=top_k, generator=torch.Generator().manual_seed(seed))
    return [model.tokenizer.decode(row, skip_special_tokens=True) for row in tokens]


def fluency(model: TransformerBridge, prompts: Sequence[str], **generation) -> float:
    """Mean n-gram entropy of the model's generations from ``prompts`` (prompt text included)."""
    texts = generate(model, prompts, **generation)
    return sum(ngram_entropy(prompt + text) for prompt, text in zip(prompts, texts)) / len(prompts)
