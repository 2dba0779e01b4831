"""Knowledge neurons (Dai et al. 2022, "Knowledge Neurons in Pretrained Transformers", section 3.2)
and interventions on them.

For one fact expressed by several prompts (paraphrases): attribute the answer to every FFN
neuron with integrated gradients (:func:`workbench.locate.attribution.attribute`); in each prompt
keep the neurons whose attribution exceeds ``threshold`` x that prompt's maximum; keep the neurons
found in more than ``share`` of the prompts. Optional negative prompts (other facts) remove
neurons that are common to unrelated facts too.

Interventions: suppress (zero) or amplify (double) the neurons' activations at the last
position and measure the relative change of p(answer), for the fact and for unrelated facts.

Limits: the thresholds default to the paper's t = 0.2 and a share of 0.5 (the paper tunes p between
0.5 and 0.7 for BERT); on a small model, neurons found with one
template can differ from those of another, which the share filter is meant to absorb.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.errors import InvalidRequestError
from workbench.locate.attribution import attribute
from workbench.locate.tracing import answer_token
from workbench.results import JsonResult
from workbench.tokens import encode, pad_right


@dataclass(repr=False)
class KnowledgeNeurons(JsonResult):
    """The knowledge neurons of one fact, with the per-prompt neurons they were refined from."""

    prompts: list[str]
    answer: str
    neurons: list[list[int]]
    """``[layer, neuron]`` pairs shared by more than ``share`` of the prompts."""
    per_prompt: list[list[list[int]]]
    settings: dict = field(default_factory=dict)

    def by_layer(self, n_layers: int) -> np.ndarray:
        """Number of knowledge neurons in each layer."""
        counts = np.zeros(n_layers, dtype=int)
        for layer, _ in self.neurons:
            counts[layer] += 1
        return counts


def knowledge_neurons(
    model: TransformerBridge,
    prompts: Sequence[str],
    answer: str,
    *,
    threshold: float = 0.2,
    share: float = 0.5,
    negative_prompts: Sequence[str] = (),
    steps: int = 20,
    layers: Sequence[int] | None = None,
    dtype: str = "float32",
) -> KnowledgeNeurons:
    """Find the knowledge neurons of the fact that ``prompts`` all complete with ``answer``.

    Args:
        threshold: keep a prompt's neurons with attribution > ``threshold`` x its maximum (Dai et al.: 0.2).
        share: keep neurons found in more than this share of the prompts (Dai et al. use 0.5-0.7).
        negative_prompts: prompts of unrelated facts (completed with their own top prediction);
            neurons found in more than ``share`` of them are removed.
        steps: integration steps per attribution.
        layers: layers whose neurons are candidates (default: all). Leave out layers whose
            attributions do not converge (a large convergence delta in :func:`attribute`'s result).
        dtype: ``"bfloat16"`` for the attributions' matrix products (:func:`attribute`).
    """
    if not prompts:
        raise InvalidRequestError("knowledge_neurons needs at least one prompt")
    if not 0 < threshold <= 1 or not 0 <= share < 1:
        raise InvalidRequestError("threshold must be in (0, 1] and share in [0, 1)")
    def salient(prompt: str, answer: str | None) -> set[tuple[int, int]]:
        return _salient(attribute(model, prompt, answer, steps=steps, layers=layers, dtype=dtype), threshold)

    per_prompt = [salient(prompt, answer) for prompt in prompts]
    counts = Counter(neuron for found in per_prompt for neuron in found)
    neurons = {n for n, c in counts.items() if c > share * len(prompts)}
    if negative_prompts:
        negative = Counter(n for p in negative_prompts for n in salient(p, None))
        neurons -= {n for n, c in negative.items() if c > share * len(negative_prompts)}
    return KnowledgeNeurons(
        prompts=list(prompts),
        answer=answer,
        neurons=[list(n) for n in sorted(neurons)],
        per_prompt=[[list(n) for n in sorted(found)] for found in per_prompt],
        settings={"threshold": threshold, "share": share, "steps": steps, "negatives": len(negative_prompts),
                  "layers": None if layers is None else list(layers), "dtype": dtype},
    )


def _salient(result, threshold: float) -> set[tuple[int, int]]:
    peak = result.attributions.max()
    if peak <= 0:
        return set()
    layers, columns = np.nonzero(result.attributions > threshold * peak)
    return {(result.layers[l], int(c)) for l, c in zip(layers, columns)}


@torch.no_grad()
def answer_probabilities(
    model: TransformerBridge,
    prompts: Sequence[str],
    answers: Sequence[str],
    neurons: Sequence[Sequence[int]] = (),
    scale: float = 1.0,
) -> np.ndarray:
    """p(answer) at the last position of each prompt, with ``neurons`` multiplied by ``scale``
    there (0 suppresses, 2 amplifies, 1 leaves the model as it is)."""
    by_layer: dict[int, list[int]] = {}
    for layer, neuron in neurons:
        by_layer.setdefault(families.check_layer(model, layer), []).append(neuron)
    if not prompts:
        return np.zeros(0)
    rows = [encode(model, prompt)[0].tolist() for prompt in prompts]
    ids = pad_right(rows, pad=rows[0][-1], device=model.cfg.device)  # one pass; no row reads its padding
    batch = torch.arange(len(rows), device=ids.device)
    last = torch.tensor([len(row) - 1 for row in rows], device=ids.device)

    def rescale(columns: list[int]):
        columns = torch.tensor(columns, device=ids.device)

        def hook(activation: Float[torch.Tensor, "batch pos d_mlp"], hook=None):
            activation[batch[:, None], last[:, None], columns[None, :]] *= scale
            return activation

        return hook

    hooks = [(families.Hooks.mlp_key(layer), rescale(columns)) for layer, columns in by_layer.items()]
    logits = model.run_with_hooks(ids, return_type="logits", fwd_hooks=hooks)[batch, last]  # [prompts, d_vocab]
    answer_ids = torch.tensor([answer_token(model, answer) for answer in answers], device=ids.device)
    return logits.float().softmax(-1)[batch, answer_ids].cpu().numpy().astype(np.float64)


def intervention_effect(
    model: TransformerBridge, neurons: Sequence[Sequence[int]], prompts: Sequence[str], answers: Sequence[str], scale: float
) -> np.ndarray:
    """Relative change of p(answer), (p_intervened - p) / p, per prompt (Dai et al., Figure 3)."""
    before = answer_probabilities(model, prompts, answers)
    after = answer_probabilities(model, prompts, answers, neurons, scale)
    return (after - before) / before
