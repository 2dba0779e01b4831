"""Knowledge-neuron editing (Dai et al. 2022, "Knowledge Neurons in Pretrained Transformers",
section 5: "updating facts" and "erasing relations").

Locate the knowledge neurons of the fact the request rewrites (integrated gradients over FFN
activations, :func:`workbench.locate.neurons.knowledge_neurons`, attributing the old answer on the
request's prompt), then change their value vectors, the columns of the MLP output projection:

* update: v_i <- v_i - old_weight * e(old answer) + new_weight * e(new answer), where e(t) is the
  output embedding (unembedding row) of t's first token; Dai et al. use weights 1 and 8;
* erase (``erase=True``): v_i <- 0.

Limits: one prompt per request (the paraphrase refinement of :func:`knowledge_neurons` needs
several), only first tokens of multi-token answers (and, without ``target_true``, the model's top
token read back as text, which can differ from it for sub-word tokens), and no guard on what else
the changed neurons encode; a request whose attribution finds no neuron above the threshold is
left unedited (its ``info["requests"]`` entry lists no neurons). Dai et al. report modest success
rates for updates (48.5% on their BERT facts).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from workbench import families
from workbench.data import EditRequest
from workbench.edit.session import EditResult
from workbench.locate.neurons import knowledge_neurons
from workbench.predict import top_predictions
from workbench.tokens import target_ids


@dataclass(frozen=True)
class KnHyperParams:
    """Knowledge-neuron editing settings.

    Attributes:
        threshold: keep neurons with attribution above this share of the prompt's maximum (Dai et al.: 0.2).
        steps: integration steps of the attribution.
        old_weight: how much of the old answer's embedding each value vector loses (Dai et al.: 1).
        new_weight: how much of the new answer's embedding it gains (Dai et al.: 8).
        erase: zero the value vectors instead (the old answer is erased, nothing is written).
    """

    threshold: float = 0.2
    steps: int = 20
    old_weight: float = 1.0
    new_weight: float = 8.0
    erase: bool = False



def apply_kn(result: EditResult, requests: list[EditRequest], layer: int | None, hparams: KnHyperParams,
             progress: bool = False) -> None:
    """Edit the knowledge neurons of each request in turn; ``layer`` limits them to one layer."""
    model = result.model
    if layer is not None:
        layer = families.check_layer(model, layer)
    unembedding = families.unembedding(model).weight  # [vocab, d_model]
    details = []
    for request in tqdm(requests, desc="KN edit", disable=not progress or len(requests) < 2):
        prompt = request.filled_prompt()
        old = request.target_true or top_predictions(model, prompt, k=1)[0].token.strip()
        found = knowledge_neurons(model, [prompt], old, threshold=hparams.threshold, steps=hparams.steps)
        neurons = [(l, i) for l, i in found.neurons if layer is None or l == layer]
        direction = (hparams.new_weight * unembedding[target_ids(model, request.target_new)[0]]
                     - hparams.old_weight * unembedding[target_ids(model, old)[0]])  # [d_model]
        for l in sorted({l for l, _ in neurons}):
            projection = families.mlp_out_projection(model, l)
            columns = [i for nl, i in neurons if nl == l]
            change = torch.zeros(projection.d_out, projection.d_in, dtype=torch.float64)  # [d_model, d_mlp]
            if hparams.erase:
                change[:, columns] = -projection.matrix().detach()[:, columns].double()
            else:
                change[:, columns] = direction.detach().double()[:, None]
            result.apply_delta(projection.name, projection.to_stored(change))
        details.append({"subject": request.subject, "old_answer": old, "neurons": [list(n) for n in neurons]})
    result.info.update({"requests": details, "layer": layer})
