"""Which input tokens, and which layers' residual streams, carry the answer: captum's
``LayerIntegratedGradients`` (Sundararajan et al. 2017) over the embedding and the block outputs.

The baseline input replaces every token after BOS by the padding token; attributions at a layer
are summed over the model dimension. Limits: this baseline is a convention, not "no information";
the convergence delta of ``LayerIntegratedGradients`` compares against that baseline input, so it
does not measure completeness of the per-layer scores (see the knowledge-neuron attribution for
a completeness-checked method).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from captum.attr import LayerIntegratedGradients
from transformer_lens.model_bridge import TransformerBridge

from workbench.locate.tracing import answer_token
from workbench.results import JsonResult
from workbench.tokens import encode


@dataclass(repr=False)
class TokenAttribution(JsonResult):
    """Attribution of p(answer) to each input token and to each layer's output."""

    prompt: str
    answer: str
    tokens: list[str]
    token_scores: np.ndarray
    """``[pos]`` attribution at the token embeddings."""
    layer_scores: np.ndarray
    """``[layer, pos]`` attribution at each block's output per position. Each layer's row sums to
    the same total (a block output is a complete cut of the network), so the information is in
    how the total is spread over positions, layer by layer."""
    settings: dict = field(default_factory=dict)


def token_attribution(
    model: TransformerBridge, prompt: str, answer: str | None = None, *, steps: int = 20
) -> TokenAttribution:
    """Layer integrated gradients of p(answer) at the embedding and at every block output."""
    hf = model.original_model
    ids = encode(model, prompt)
    with torch.no_grad():
        logits = hf(ids).logits[0, -1]
    answer_id = int(logits.argmax()) if answer is None else answer_token(model, answer)
    baseline = ids.clone()
    baseline[:, 1:] = model.tokenizer.pad_token_id

    def forward(input_ids: torch.Tensor) -> torch.Tensor:
        return hf(input_ids).logits[:, -1].float().softmax(-1)[:, answer_id]

    def attribution_at(layer: torch.nn.Module) -> torch.Tensor:
        # one layer at a time: captum interpolates every listed layer at once, which would cut
        # the later layers off from the earlier ones
        explainer = LayerIntegratedGradients(forward, layer)
        return _output(explainer.attribute(ids, baselines=baseline, n_steps=steps, internal_batch_size=steps))

    # the bridge's own components: they are what the forward pass calls, whatever the family
    token_scores = attribution_at(model.embed)[0].sum(-1).detach().float().cpu().numpy()
    layer_scores = np.stack([attribution_at(block)[0].sum(-1).detach().float().cpu().numpy() for block in model.blocks])
    return TokenAttribution(
        prompt=prompt,
        answer=model.tokenizer.decode([answer_id]),
        tokens=[model.tokenizer.decode([int(i)]) for i in ids[0]],
        token_scores=token_scores,
        layer_scores=layer_scores,
        settings={"steps": steps, "baseline": "pad tokens after BOS"},
    )


def _output(attribution) -> torch.Tensor:
    """Blocks return tuples; captum attributes their first element, the hidden states."""
    return attribution[0] if isinstance(attribution, tuple) else attribution
