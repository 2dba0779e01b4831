"""Where an editor reads and writes: a request's prompt in several contexts and the subject's last
token in each of them.

ROME and MEMIT (Meng et al. 2022, 2023) average the key of a subject over the prompt preceded by
short random texts sampled from the model, so the key stands for the subject rather than for one
sentence; both then write at the subject's last token. This module builds those rows for many
requests at once and reads activations at the subject's last token in batches.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.capture import activation_until
from workbench.data import EditRequest
from workbench.edit.stats import statistics_fingerprint
from workbench.sampling import sample_top_k
from workbench.state import state_of
from workbench.tokens import locate_subject, pad_right


def sample_prefixes(model: TransformerBridge, spec: tuple[tuple[int, int], ...], seed: int) -> list[str]:
    """Context templates ``"{}"`` plus ``"<prefix>. {}"`` for random prefixes sampled from the model
    (top-5 sampling after BOS); ``spec`` lists (length in tokens, count) pairs.

    Sampled once per (weights, spec, seed) and model (kept in its state, :mod:`workbench.state`), as
    the reference implementations do: the
    weights are those the statistics are pinned to (:func:`workbench.edit.stats.statistics_fingerprint`),
    so edits applied one after another keep the unedited model's prefixes."""
    key = (statistics_fingerprint(model), tuple(map(tuple, spec)), seed)
    sampled = state_of(model).prefixes
    if key not in sampled:
        sampled[key] = ["{}"] + [text.strip() + ". {}" for text in _sample_texts(model, spec, seed)]
    return list(sampled[key])


def _sample_texts(model: TransformerBridge, spec: tuple[tuple[int, int], ...], seed: int) -> list[str]:
    """All prefixes of ``spec`` sampled in one batch, braces removed."""
    lengths = [length for length, count in spec for _ in range(count)]
    if not lengths:
        return []
    generator = torch.Generator().manual_seed(seed)
    tokens = sample_top_k(model, [[model.tokenizer.bos_token_id]] * len(lengths), max(lengths), generator=generator)
    texts = [model.tokenizer.decode(row[:length], skip_special_tokens=True) for row, length in zip(tokens, lengths)]
    return [text.replace("{", "").replace("}", "") for text in texts]


@dataclass(frozen=True)
class ContextRows:
    """Token rows of every (request, context template) pair, request-major: the rows of request
    ``i`` are ``i * n_templates ... (i + 1) * n_templates - 1``, the unprefixed prompt first."""

    rows: list[list[int]]
    request_of_row: list[int]
    subject_last: list[int]
    """Position of the subject's last token in each row."""
    n_templates: int


def context_rows(model: TransformerBridge, requests: Sequence[EditRequest], templates: Sequence[str]) -> ContextRows:
    """Every request's filled prompt inside every template (``templates[0]`` should be ``"{}"``)."""
    rows, owners, positions = [], [], []
    for index, request in enumerate(requests):
        prompt = request.filled_prompt()
        for template in templates:
            span = locate_subject(model, template.format(prompt), request.subject, search_from=template.index("{}"))
            rows.append(span.input_ids[0].tolist())
            owners.append(index)
            positions.append(span.last)
    return ContextRows(rows, owners, positions, len(templates))


@torch.no_grad()
def activations_at_subject(
    model: TransformerBridge, hook_name: str, contexts: ContextRows, *, chunk_rows: int = 256
) -> Float[torch.Tensor, "rows d"]:
    """The activation at ``hook_name`` at the subject's last token of every row (float64)."""
    gathered = []
    for start in range(0, len(contexts.rows), chunk_rows):
        rows = contexts.rows[start : start + chunk_rows]
        input_ids = pad_right(rows, model.tokenizer.pad_token_id, model.cfg.device)
        activation = activation_until(model, input_ids, hook_name)  # [rows, pos, d]
        positions = torch.tensor(contexts.subject_last[start : start + chunk_rows], device=input_ids.device)
        gathered.append(activation[torch.arange(len(rows), device=input_ids.device), positions].double())
    return torch.cat(gathered)


def mean_keys(
    model: TransformerBridge, layer: int, requests: Sequence[EditRequest], templates: Sequence[str]
) -> Float[torch.Tensor, "n d_mlp"]:
    """k* per request: the MLP key of ``layer`` at the subject's last token, averaged over templates."""
    contexts = context_rows(model, requests, templates)
    keys = activations_at_subject(model, families.Hooks.mlp_key(layer), contexts)  # [rows, d_mlp]
    return keys.view(len(requests), contexts.n_templates, -1).mean(1)


def values_at_subject(
    model: TransformerBridge, hook_name: str, requests: Sequence[EditRequest]
) -> Float[torch.Tensor, "n d"]:
    """The activation at ``hook_name`` at the subject's last token of each request's own prompt."""
    return activations_at_subject(model, hook_name, context_rows(model, requests, ["{}"]))
