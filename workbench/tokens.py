"""How the workbench turns prompts into tokens, and finds the subject's tokens in them.

Every method tokenizes through :func:`encode` (the tokenizer's BOS prepended, as the bundled
model was trained and as TransformerLens does), so token positions mean the same everywhere.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Int
from transformer_lens.model_bridge import TransformerBridge

from workbench.errors import PromptTooLongError, SubjectNotInPromptError


def encode(model: TransformerBridge, prompt: str) -> Int[torch.Tensor, "1 pos"]:
    """Token ids of ``prompt`` with the tokenizer's BOS prepended, on the model's device."""
    ids = model.tokenizer(prompt, return_tensors="pt")["input_ids"]
    if ids.shape[1] > model.cfg.n_ctx:
        raise PromptTooLongError(
            f"prompt is {ids.shape[1]} tokens but the model's context is {model.cfg.n_ctx}: shorten it"
        )
    return ids.to(model.cfg.device)


def pad_right(rows: list[list[int]], pad: int, device: torch.device | str = "cpu") -> Int[torch.Tensor, "batch pos"]:
    """Token-id rows right-padded to one length. A causal model needs no attention mask for them:
    real tokens never attend to the padding after them."""
    width = max(map(len, rows))
    return torch.tensor([row + [pad] * (width - len(row)) for row in rows], dtype=torch.long, device=device)


def length_batches(lengths: Sequence[int], max_rows: int, max_tokens: int = 8192) -> list[list[int]]:
    """Indices of rows grouped into batches of similar length: sorted by length, each batch at most
    ``max_rows`` rows and (unless it is a single row) at most ``max_tokens`` tokens once padded to its
    longest row. A few long texts among short ones then neither pad a whole batch to their length
    nor make one huge batch."""
    batches: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        batch = batches[-1] if batches else None
        if batch is None or len(batch) == max_rows or (len(batch) + 1) * lengths[index] > max_tokens:
            batches.append([index])
        else:
            batch.append(index)
    return batches


def pad_left(
    rows: Sequence[Sequence[int]], pad: int, device: torch.device | str = "cpu"
) -> tuple[Int[torch.Tensor, "batch pos"], Int[torch.Tensor, "batch pos"]]:
    """Token-id rows left-padded to one length, and their attention mask (1 on real tokens), so
    every row ends at the last position (continuations and KV-cached suffixes line up)."""
    return _padded(rows, pad, device, left=True)


def pad_right_with_mask(
    rows: Sequence[Sequence[int]], pad: int, device: torch.device | str = "cpu"
) -> tuple[Int[torch.Tensor, "batch pos"], Int[torch.Tensor, "batch pos"]]:
    """Token-id rows right-padded to one length, and their attention mask (1 on real tokens), so
    every row starts at the first position."""
    return _padded(rows, pad, device, left=False)


def _padded(rows: Sequence[Sequence[int]], pad: int, device: torch.device | str, left: bool):
    width = max((len(row) for row in rows), default=0)
    ids, mask = [], []
    for row in rows:
        padding, real = [pad] * (width - len(row)), list(row)
        ids.append(padding + real if left else real + padding)
        mask.append([0] * len(padding) + [1] * len(real) if left else [1] * len(real) + [0] * len(padding))
    as_tensor = lambda values: torch.tensor(values, dtype=torch.long, device=device).view(len(rows), width)  # noqa: E731
    return as_tensor(ids), as_tensor(mask)


@dataclass(frozen=True)
class SubjectSpan:
    """A tokenized prompt and the half-open token range ``[start, end)`` covering the subject."""

    input_ids: Int[torch.Tensor, "1 pos"]
    start: int
    end: int

    @property
    def last(self) -> int:
        """Position of the last subject token (where ROME reads its key)."""
        return self.end - 1


def locate_subject(model: TransformerBridge, prompt: str, subject: str, search_from: int = 0) -> SubjectSpan:
    """Tokenize ``prompt`` and find the tokens of the first occurrence of ``subject`` in it
    at or after character ``search_from``.

    A token belongs to the subject if its characters overlap the subject's characters, so a
    subject glued to punctuation ("France's") still gets all of its tokens.
    """
    if not subject or not subject.strip():
        raise SubjectNotInPromptError("the subject is empty; give the words of the prompt that name it")
    char_start = prompt.find(subject, search_from)
    if char_start < 0:
        raise SubjectNotInPromptError(f"subject {subject!r} does not occur in prompt {prompt!r}")
    char_end = char_start + len(subject)
    encoded = model.tokenizer(prompt, return_offsets_mapping=True)
    positions = [
        i for i, (a, b) in enumerate(encoded["offset_mapping"]) if b > a and a < char_end and b > char_start
    ]
    input_ids = encode(model, prompt)
    return SubjectSpan(input_ids, positions[0], positions[-1] + 1)


def target_ids(model: TransformerBridge, target: str) -> list[int]:
    """Token ids of ``target`` as a continuation of a prompt: a leading space, no BOS."""
    return model.tokenizer(" " + target.strip(), add_special_tokens=False)["input_ids"]


TargetToken = tuple[int, int, int]
"""(row, position whose next-token prediction is the token, token id)."""


def teacher_forced_rows(model: TransformerBridge, prompts: Sequence[str],
                        targets: Sequence[str]) -> tuple[list[list[int]], list[TargetToken]]:
    """Each prompt followed by its target's tokens but the last (the input of a teacher-forced pass),
    and where each target token is predicted."""
    rows: list[list[int]] = []
    predicted: list[TargetToken] = []
    for prompt, target in zip(prompts, targets):
        prompt_ids = model.tokenizer(prompt)["input_ids"]
        tokens = target_ids(model, target)
        predicted.extend((len(rows), len(prompt_ids) - 1 + k, token) for k, token in enumerate(tokens))
        rows.append(prompt_ids + tokens[:-1])
    return rows, predicted
