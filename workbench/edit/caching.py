"""Caching: the baseline memory-based editor (the "cache" baseline of Mitchell et al. 2022, SERAC).

Each edit is kept as (prompt, target). An input that matches an edit's prompt is answered with the
edit's target, token by token (teacher-forced scoring and generation alike); every other input is
answered by the base model, whose weights never change. Two ways to match:

* ``match="exact"``: the input's tokens equal the edit prompt's tokens (BOS included), followed
  by the first tokens of the target. Perfect on the prompt it was given, blind to paraphrases.
* ``match="similarity"``: the input, cut before the part of the target already produced, has
  cosine similarity at least ``threshold`` with the edit prompt, each represented by the mean of
  the model's input embeddings of its tokens (a bag of tokens: cheap, with no forward pass). Catches
  paraphrases that reuse the prompt's words, and neighbours that differ in one name alike.

Limits: the memory answers only the target's tokens; after them the base model continues. Under
``"similarity"`` an input that already contains the target can still match (it is similar to the
prompt), so generation may repeat the target. The memory holds the prompt and target token ids per
edit (and an embedding of ``d_model`` floats under ``"similarity"``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import EditRequest
from workbench.edit.intercept import LogitRows, forced_logits, install_rule, remove_rule
from workbench.edit.session import EditResult
from workbench.errors import InvalidRequestError
from workbench.tokens import target_ids

MATCHES = ("exact", "similarity")


@dataclass(frozen=True)
class CachingHyperParams:
    """How an input is matched to a cached edit.

    Attributes:
        match: ``"exact"`` (token-identical prompt) or ``"similarity"`` (bag-of-embeddings cosine).
        threshold: the least cosine similarity that matches, in (0, 1]; used under ``"similarity"``.
    """

    match: str = "exact"
    threshold: float = 0.95

    def __post_init__(self) -> None:
        if self.match not in MATCHES:
            raise InvalidRequestError(f"caching match {self.match!r}: choose one of {MATCHES}")
        if not 0 < self.threshold <= 1:
            raise InvalidRequestError(f"caching threshold must be in (0, 1], got {self.threshold}")


class EditCache:
    """The edits' prompts and targets as token ids, and the rule that answers from them."""

    def __init__(self, model: TransformerBridge, requests: Sequence[EditRequest], hparams: CachingHyperParams) -> None:
        self.hparams = hparams
        self.vocab = model.cfg.d_vocab
        self.prompts = [tuple(model.tokenizer(r.filled_prompt())["input_ids"]) for r in requests]
        self.targets = [tuple(target_ids(model, r.target_new)) for r in requests]
        # exact: every prefix the memory answers (prompt + target so far) -> the next target token
        self.next_token = {prompt + target[:j]: target[j] for prompt, target in zip(self.prompts, self.targets)
                           for j in range(len(target))}
        self.embeddings = model.original_model.get_input_embeddings().weight.detach()
        self.special = set(model.tokenizer.all_special_ids)
        self.prompt_vectors = (torch.stack([self._vector(prompt) for prompt in self.prompts])
                               if hparams.match == "similarity" else None)  # [edits, d_model]

    def _vector(self, tokens: Sequence[int]) -> Float[torch.Tensor, "d_model"]:
        kept = [t for t in tokens if t not in self.special] or list(tokens)
        return torch.nn.functional.normalize(self.embeddings[kept].float().mean(0), dim=0)

    def answer(self, rows: LogitRows) -> dict[int, torch.Tensor]:
        """The forced next token of each row whose prefix matches an edit."""
        device = rows.logits.device
        answers = {}
        for index, prefix in enumerate(rows.prefixes):
            token = self._match(prefix) if prefix else None
            if token is not None:
                answers[index] = forced_logits(token, rows.logits.shape[-1], device)
        return answers

    def _match(self, prefix: tuple[int, ...]) -> int | None:
        if self.hparams.match == "exact":
            return self.next_token.get(prefix)
        longest = max(len(target) for target in self.targets)
        for produced in range(min(longest - 1, len(prefix) - 1), -1, -1):  # target tokens already in the input
            asked, so_far = prefix[: len(prefix) - produced], prefix[len(prefix) - produced :]
            similarity = self.prompt_vectors @ self._vector(asked)  # [edits]
            order = similarity.argsort(descending=True)  # most similar first
            for edit in order[similarity[order] >= self.hparams.threshold].tolist():
                target = self.targets[edit]
                if produced < len(target) and target[:produced] == so_far:
                    return target[produced]
        return None

    @property
    def size_bytes(self) -> int:
        ids = sum(len(p) + len(t) for p, t in zip(self.prompts, self.targets)) * 8
        vectors = 0 if self.prompt_vectors is None else self.prompt_vectors.numel() * 4
        return ids + vectors


def apply_caching(result: EditResult, requests: list[EditRequest], layer, hparams: CachingHyperParams,
                  progress: bool = False) -> None:
    """Keep ``requests`` in a cache that answers for ``result.model`` until ``result`` is restored."""
    if layer is not None:
        raise InvalidRequestError("caching changes no layer; leave layer out")
    cache = EditCache(result.model, requests, hparams)
    install_rule(result.model, result, cache.answer)
    result.on_restore(lambda: remove_rule(result.model, result))
    result.info.update({"memory_settings": asdict(hparams), "memory_bytes": cache.size_bytes})
