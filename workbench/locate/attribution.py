"""Integrated-gradients attribution of an answer to individual FFN neurons (Dai et al. 2022,
"Knowledge Neurons in Pretrained Transformers", section 3; Sundararajan et al. 2017).

For each layer l, the activation w_l of its FFN neurons at the prompt's last position (the
input of the MLP output projection) is scaled from 0 to its value while everything else stays
as in the clean run; the attribution of neuron i is

    w_li * integral_0^1 dF(alpha w_l) / dw_li  d alpha,

with F = p(answer) (or log p). Completeness: the attributions of a layer sum to
F(w_l) - F(0), up to the integration error captum reports as the convergence delta.

Speed: the scaled activation only changes the last position, so the other positions are run
once and their keys/values cached; every (layer, step) pair then costs one token from its own
layer's block on (the blocks below see the clean run), and all of them are batched together
through captum (``internal_batch_size`` rows per pass, each block running only the rows that
start at or below it). The reference implementation instead runs the full prompt through every
block once per step, layer by layer.

Limits: attributions are for the last position only (Dai et al.'s setting); the baseline is
the zero activation, which is not "no information" for every activation function.
"""
from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from captum.attr import IntegratedGradients
from jaxtyping import Float, Int
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.errors import InvalidRequestError
from workbench.locate.tracing import answer_token
from workbench.models import frozen_weights
from workbench.precision import check_compute_dtype, computing_in
from workbench.results import JsonResult
from workbench.tokens import encode


@dataclass(repr=False)
class NeuronAttribution(JsonResult):
    """IG attribution of p(answer) (or log p) to every FFN neuron of the chosen layers."""

    prompt: str
    answer: str
    answer_id: int
    target: str
    layers: list[int]
    attributions: np.ndarray
    """``[layer, d_mlp]`` attribution of each neuron."""
    activations: np.ndarray
    """``[layer, d_mlp]`` the neurons' clean activations at the last position."""
    deltas: np.ndarray
    """``[layer]`` the convergence delta: sum of attributions - (F(x) - F(baseline)), as captum defines it."""
    output: float
    """F at the clean activations."""
    baseline_outputs: np.ndarray
    """``[layer]`` F with that layer's activations zeroed at the last position."""
    settings: dict = field(default_factory=dict)

    def top_neurons(self, k: int = 10) -> list[tuple[int, int, float]]:
        """The ``k`` (layer, neuron, attribution) triples with the largest attribution."""
        flat = np.argsort(self.attributions, axis=None)[::-1][:k]
        rows, columns = np.unravel_index(flat, self.attributions.shape)
        return [(self.layers[r], int(c), float(self.attributions[r, c])) for r, c in zip(rows, columns)]


def integrated_gradients(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    *,
    steps: int = 20,
    method: str = "gausslegendre",
    internal_batch_size: int | None = None,
    endpoint_outputs: tuple[torch.Tensor, torch.Tensor] | Callable[[], tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Captum's integrated gradients of ``forward`` from a zero baseline to ``inputs``.

    Each row of ``inputs`` is attributed independently. Returns (attributions like ``inputs``,
    convergence delta per row: sum of the row's attributions - (F(input) - F(baseline))).
    ``endpoint_outputs``, (F(inputs), F(baselines)) per row when the caller already has them (or a
    function returning them once the attribution has run), spares captum's two extra forward
    passes for the delta; the delta is the same quantity.
    """
    explainer = IntegratedGradients(forward)
    if endpoint_outputs is None:
        return explainer.attribute(
            inputs, baselines=torch.zeros_like(inputs), n_steps=steps, method=method,
            internal_batch_size=internal_batch_size, return_convergence_delta=True,
        )
    attributions = explainer.attribute(inputs, baselines=torch.zeros_like(inputs), n_steps=steps, method=method,
                                       internal_batch_size=internal_batch_size)
    at_input, at_baseline = endpoint_outputs() if callable(endpoint_outputs) else endpoint_outputs
    delta = attributions.sum(-1) - (at_input - at_baseline)
    return attributions, delta


class _LastPositionRunner:
    """Runs only the last token of a prompt, with the earlier positions' keys and values cached,
    and each row's FFN activations at one chosen layer replaced; a row replaced at block l starts
    at block l (what enters it is the clean run's), so the blocks below it are not run."""

    def __init__(self, model: TransformerBridge, prompt: str, layers: Sequence[int]) -> None:
        self.model = model
        self.layers = list(layers)
        self.modules = [families.mlp_out_projection(model, layer).module for layer in self.layers]
        ids = encode(model, prompt)
        if ids.shape[1] < 2:
            raise InvalidRequestError("the prompt needs at least one token after the BOS token")
        captured = {}
        handles = [
            module.register_forward_pre_hook(lambda m, args, i=i: captured.__setitem__(i, args[0][0, -1].clone()))
            for i, module in enumerate(self.modules)
        ]
        try:
            # the whole prompt once: the prefix's cache, the clean last position and what enters each block there
            with torch.no_grad(), families.recording_block_inputs(model) as entering:
                run = model.original_model(ids, use_cache=True, logits_to_keep=1)
        finally:
            for handle in handles:
                handle.remove()
        self.clean_logits: Float[torch.Tensor, "d_vocab"] = run.logits[0, -1].float()
        self.clean_activations: Float[torch.Tensor, "layers d_mlp"] = torch.stack([captured[i] for i in range(len(self.modules))])
        self.entering: Float[torch.Tensor, "layers d_model"] = torch.stack([entering[layer][0, -1] for layer in self.layers])
        self.prefix_cache = run.past_key_values
        self.prefix_cache.crop(-1)  # drop the last position, which every later pass recomputes

    def logits(self, activations: Float[torch.Tensor, "batch d_mlp"],
               layer_index: Int[torch.Tensor, "batch"]) -> Float[torch.Tensor, "batch d_vocab"]:
        """Last-position logits with row ``r``'s FFN activations at ``self.layers[layer_index[r]]``
        set to ``activations[r]``; differentiable in ``activations``."""
        blocks = torch.tensor(self.layers, device=layer_index.device)[layer_index]
        order = torch.argsort(blocks, stable=True)  # a staggered pass wants rows in ascending start block
        ordered_index, ordered_values = layer_index[order], activations[order]
        cache = copy.deepcopy(self.prefix_cache)
        cache.batch_repeat_interleave(len(order))
        handles = []
        for index, module in enumerate(self.modules):
            rows = (ordered_index == index).nonzero()[:, 0]

            def replace(module, args, rows=rows):
                activation = args[0].clone()  # [active rows, 1, d_mlp]
                activation[rows, 0] = ordered_values[rows].to(activation.dtype)
                return (activation, *args[1:])

            handles.append(module.register_forward_pre_hook(replace))
        try:
            hidden = self.entering[ordered_index][:, None]  # [batch, 1, d_model]
            logits = families.run_from_block(self.model, blocks[order].tolist(), hidden, past_key_values=cache).logits
        finally:
            for handle in handles:
                handle.remove()
        return logits[:, -1].float()[torch.argsort(order)]


def attribute(
    model: TransformerBridge,
    prompt: str,
    answer: str | None = None,
    *,
    layers: Sequence[int] | None = None,
    steps: int = 20,
    method: str = "gausslegendre",
    target: str = "prob",
    internal_batch_size: int = 1024,
    dtype: str = "float32",
) -> NeuronAttribution:
    """Integrated gradients of p(answer) at the last position w.r.t. every FFN neuron of ``layers``.

    Args:
        answer: the answer (its first token); ``None`` takes the model's top prediction.
        layers: layers to attribute (default: all), batched together.
        steps: integration steps (Dai et al. use 20).
        method: captum's integration rule. The default ``"gausslegendre"`` is exact for polynomials
            of degree < 2 x steps; ``"riemann_right"`` is Dai et al.'s sum. Avoid captum's
            ``"riemann_trapezoid"``: its weights sum to (steps - 1) / steps, not 1, so it
            under-reports every attribution by 1/steps (the convergence delta shows it).
        target: ``"prob"`` for p(answer) or ``"log_prob"`` for log p(answer).
        internal_batch_size: (layer, step) rows per forward pass.
        dtype: ``"bfloat16"`` runs the integration passes' matrix products, forward and backward,
            in bfloat16 (:mod:`workbench.precision`); the clean run, the endpoints of the
            completeness delta and the attributions' sums stay float32.
    """
    if target not in ("prob", "log_prob"):
        raise InvalidRequestError(f"target must be 'prob' or 'log_prob', got {target!r}")
    if steps < 1:
        raise InvalidRequestError("steps must be at least 1")
    check_compute_dtype(dtype)
    layers = list(range(families.n_layers(model))) if layers is None else [families.check_layer(model, l) for l in layers]
    runner = _LastPositionRunner(model, prompt, layers)
    clean_logits, activations = runner.clean_logits, runner.clean_activations
    answer_id = int(clean_logits.argmax()) if answer is None else answer_token(model, answer)

    def readout(logits: torch.Tensor) -> torch.Tensor:
        scores = logits.log_softmax(-1)[:, answer_id]
        return scores if target == "log_prob" else scores.exp()

    n_layers = len(layers)
    baseline_outputs: list[torch.Tensor] = []

    def forward(scaled: Float[torch.Tensor, "rows d_mlp"]) -> Float[torch.Tensor, "rows"]:
        # The first pass also carries one zero-activation row per layer (the baselines, F(0)),
        # which saves a pass of its own; their outputs are kept aside, not returned to captum.
        n = scaled.shape[0]
        extra = not baseline_outputs
        if extra:
            scaled = torch.cat([scaled, torch.zeros_like(activations)])
        # captum orders rows step-major, each step holding every layer: row r is layer r % n_layers
        # (n is a multiple of n_layers, so the appended row j is layer j)
        row_layer = torch.arange(scaled.shape[0], device=scaled.device) % n_layers
        values = readout(runner.logits(scaled, row_layer))
        if extra:
            baseline_outputs.append(values[n:].detach())
        return values[:n]

    batch = max(n_layers, internal_batch_size // n_layers * n_layers)
    output = readout(clean_logits[None])[0]
    with frozen_weights(model), computing_in(dtype, activations.device):
        attributions, delta = integrated_gradients(
            forward, activations, steps=steps, method=method, internal_batch_size=batch,
            endpoint_outputs=lambda: (output.expand(n_layers), baseline_outputs[0]),
        )
    baselines = baseline_outputs[0]
    return NeuronAttribution(
        prompt=prompt,
        answer=model.tokenizer.decode([answer_id]),
        answer_id=answer_id,
        target=target,
        layers=layers,
        attributions=attributions.detach().float().cpu().numpy(),
        activations=activations.float().cpu().numpy(),
        deltas=delta.detach().float().cpu().numpy(),
        output=float(output),
        baseline_outputs=baselines.float().cpu().numpy(),
        settings={"steps": steps, "method": method, "dtype": dtype},
    )
