"""Activation patching and attribution patching between a clean and a corrupted prompt.

*Activation patching* runs the corrupted prompt (e.g. the same sentence about another subject)
and overwrites one activation, at one (token, layer), with its value from the clean run,
recording how far the metric moves back towards its clean value (Vig et al. 2020; Meng et al.
2022; Heimersheim & Nanda 2024, "How to use and interpret activation patching").

*Attribution patching* (Nanda 2023, "Attribution Patching: Activation Patching At Industrial
Scale"; Syed et al. 2023) approximates every such patch at once to first order: one forward
and one backward pass of the corrupted prompt give the gradient g of the metric at every
activation a, and the effect of patching is estimated as (a_clean - a_corrupted) . g.

The metric is the logit difference between the clean answer and the corrupted answer at the
last position. Limits: both prompts must have the same number of tokens (positions are patched
one to one); the linear approximation is poor where the metric saturates (e.g. the residual
stream at early layers), which :func:`patching_agreement` lets one measure.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.errors import InvalidRequestError
from workbench.locate.batched import DEFAULT_MEMORY_BUDGET, Patch, PatchRunner
from workbench.locate.tracing import KIND_HOOKS, Kind, answer_token
from workbench.results import JsonResult
from workbench.tokens import encode


@dataclass(repr=False)
class PatchingResult(JsonResult):
    """Effect on the metric of patching each (token, layer) activation of one kind."""

    method: str
    """``"activation"`` (measured) or ``"attribution"`` (first-order estimate)."""
    clean_prompt: str
    corrupted_prompt: str
    tokens: list[str]
    """Tokens of the clean prompt."""
    kind: str
    answer: str
    corrupted_answer: str
    effects: np.ndarray
    """``[pos, layer]`` metric(patched) - metric(corrupted)."""
    clean_metric: float
    corrupted_metric: float

    @property
    def normalized(self) -> np.ndarray:
        """Effects as a share of the clean-minus-corrupted gap (1 = fully restored)."""
        return self.effects / (self.clean_metric - self.corrupted_metric)


def _logit_difference(answer_id: int, corrupted_id: int):
    return lambda logits: logits[..., answer_id].float() - logits[..., corrupted_id].float()


def _prepare(model: TransformerBridge, clean_prompt: str, corrupted_prompt: str, answer, corrupted_answer):
    clean_ids, corrupted_ids = encode(model, clean_prompt), encode(model, corrupted_prompt)
    if clean_ids.shape != corrupted_ids.shape:
        raise InvalidRequestError(
            f"the clean prompt has {clean_ids.shape[1]} tokens and the corrupted one {corrupted_ids.shape[1]}; "
            "patching pairs positions one to one, so choose prompts of equal token length"
        )
    with torch.no_grad():
        clean_last = model(clean_ids, return_type="logits")[0, -1]
        corrupted_last = model(corrupted_ids, return_type="logits")[0, -1]
    answer_id = int(clean_last.argmax()) if answer is None else answer_token(model, answer)
    corrupted_id = int(corrupted_last.argmax()) if corrupted_answer is None else answer_token(model, corrupted_answer)
    if answer_id == corrupted_id:
        raise InvalidRequestError(
            "the clean and corrupted prompts have the same answer, so there is no difference to restore; "
            "pick a corrupted prompt with another answer or pass answer/corrupted_answer"
        )
    metric = _logit_difference(answer_id, corrupted_id)
    return clean_ids, corrupted_ids, answer_id, corrupted_id, metric, float(metric(clean_last)), float(metric(corrupted_last))


def activation_patching(
    model: TransformerBridge,
    clean_prompt: str,
    corrupted_prompt: str,
    *,
    kind: Kind = "hidden",
    answer: str | None = None,
    corrupted_answer: str | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    progress: bool = False,
) -> PatchingResult:
    """Patch each clean (token, layer) activation of ``kind`` into the corrupted run, one at a time.

    ``answer`` / ``corrupted_answer`` default to each prompt's top prediction.
    """
    if kind not in KIND_HOOKS:
        raise InvalidRequestError(f"kind must be one of {sorted(KIND_HOOKS)}, got {kind!r}")
    clean_ids, corrupted_ids, answer_id, corrupted_id, metric, clean_metric, corrupted_metric = _prepare(
        model, clean_prompt, corrupted_prompt, answer, corrupted_answer
    )
    n_layers, n_pos = families.n_layers(model), clean_ids.shape[1]
    names = [KIND_HOOKS[kind](layer) for layer in range(n_layers)]
    with torch.no_grad():
        _, cache = model.run_with_cache(clean_ids, names_filter=lambda name: name in names)
    sources = {("clean", name): cache[name][0] for name in names}
    cells = [[Patch(names[layer], token, "clean")] for token in range(n_pos) for layer in range(n_layers)]
    runner = PatchRunner(model, corrupted_ids, metric, sources, memory_budget=memory_budget)
    patched = runner.run(cells, progress=progress).reshape(n_pos, n_layers).numpy()
    return _result("activation", model, clean_prompt, corrupted_prompt, clean_ids, kind, answer_id, corrupted_id,
                   patched - corrupted_metric, clean_metric, corrupted_metric)


def attribution_patching(
    model: TransformerBridge,
    clean_prompt: str,
    corrupted_prompt: str,
    *,
    kinds: Sequence[Kind] = ("hidden", "mlp", "attn"),
    answer: str | None = None,
    corrupted_answer: str | None = None,
) -> dict[str, PatchingResult]:
    """First-order estimates of every activation patch of every kind, from one backward pass."""
    unknown = set(kinds) - set(KIND_HOOKS)
    if unknown:
        raise InvalidRequestError(f"unknown kinds {sorted(unknown)}; choose from {sorted(KIND_HOOKS)}")
    clean_ids, corrupted_ids, answer_id, corrupted_id, metric, clean_metric, corrupted_metric = _prepare(
        model, clean_prompt, corrupted_prompt, answer, corrupted_answer
    )
    n_layers = families.n_layers(model)
    names = [KIND_HOOKS[kind](layer) for kind in kinds for layer in range(n_layers)]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean_ids, names_filter=lambda name: name in names)
    corrupted_acts, gradients = _activations_and_gradients(model, corrupted_ids, names, metric)
    results = {}
    for kind in kinds:
        estimate = torch.stack(
            [
                ((clean_cache[name][0] - corrupted_acts[name]) * gradients[name]).sum(-1)
                for name in (KIND_HOOKS[kind](layer) for layer in range(n_layers))
            ],
            dim=1,
        )  # [pos, layer]
        results[kind] = _result("attribution", model, clean_prompt, corrupted_prompt, clean_ids, kind, answer_id,
                                corrupted_id, estimate.float().cpu().numpy(), clean_metric, corrupted_metric)
    return results


def _activations_and_gradients(
    model: TransformerBridge, input_ids, names: list[str], metric
) -> tuple[dict[str, Float[torch.Tensor, "pos d"]], dict[str, Float[torch.Tensor, "pos d"]]]:
    """Activations at ``names`` in a run of ``input_ids`` and the metric's gradient at each."""
    captured: dict[str, torch.Tensor] = {}

    def start_graph(embeddings, hook=None):
        # the weights need no gradient; the activations do, so the graph starts here
        return embeddings.detach().requires_grad_(True)

    def capture(name: str):
        def store(activation, hook=None):
            captured[name] = activation
            return activation

        return store

    hooks = [(families.Hooks.embed, start_graph)] + [(name, capture(name)) for name in names]
    with torch.enable_grad():
        logits = model.run_with_hooks(input_ids, return_type="logits", fwd_hooks=hooks)
        value = metric(logits[0, -1])
        grads = torch.autograd.grad(value, [captured[name] for name in names])
    activations = {name: captured[name][0].detach() for name in names}
    return activations, {name: grad[0] for name, grad in zip(names, grads)}


def _result(method, model, clean_prompt, corrupted_prompt, clean_ids, kind, answer_id, corrupted_id, effects,
            clean_metric, corrupted_metric) -> PatchingResult:
    decode = model.tokenizer.decode
    return PatchingResult(
        method=method,
        clean_prompt=clean_prompt,
        corrupted_prompt=corrupted_prompt,
        tokens=[decode([int(i)]) for i in clean_ids[0]],
        kind=kind,
        answer=decode([answer_id]),
        corrupted_answer=decode([corrupted_id]),
        effects=np.asarray(effects, dtype=np.float32),
        clean_metric=clean_metric,
        corrupted_metric=corrupted_metric,
    )


def patching_agreement(measured: PatchingResult, estimated: PatchingResult) -> float:
    """Pearson correlation between activation-patching effects and their attribution estimates."""
    if measured.effects.shape != estimated.effects.shape:
        raise InvalidRequestError("the two results cover different (token, layer) grids")
    return float(np.corrcoef(measured.effects.ravel(), estimated.effects.ravel())[0, 1])
