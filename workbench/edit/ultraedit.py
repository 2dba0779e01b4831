"""UltraEdit (Gu et al. 2025, "UltraEdit: Training-, Subject-, and Memory-Free Lifelong Editing in
Large Language Models", arXiv 2505.14679): lifelong editing in closed form, without corpus statistics.

Each call (a "turn" of edits) runs one teacher-forced pass of the edits' prompts and targets on the
model as edited so far, and reads at every position that predicts a target token, for each edited
MLP output projection, its input k (the MLP key) and the gradient g of the loss (the mean NLL of
all target tokens of the micro-batch) with respect to its output. The rows z = [k; g] update a
running, lifelong per-dimension mean and standard deviation (every turn so far, this one included;
Chan et al.'s pooled update), which standardise them into k^ and g^. The value wanted from the
projection is one normalised descent step, v = -lr ||k^||^2 g^, and the change is the ridge
regression of the raw keys onto the values::

    Delta = (K^T K + ridge I)^-1 K^T V        W <- W + Delta^T

Unlike MEMIT and AlphaEdit there is no second moment of corpus keys, no search for a target value,
no spreading over layers (each edited layer gets its own update from the same gradients) and no
memory of earlier edits beyond the running statistics, which is what makes tens of thousands of
edits cheap. The running statistics belong to the model (:func:`normaliser`) and are rolled back
when an edit is restored.

Which layers: the keys are read where the target is predicted, not at the subject, so causal
tracing's layer says nothing here. The authors' code edits the MLP output projections of the last
blocks but the final one (GPT-J ``fc_out`` 18-26 of 28 on zsRE, Mistral-7B ``down_proj`` 29-30 of 32,
Phi-4 30-38 of 40), and LLaMA-3, Qwen2.5 and Gemma 3's gate and up projections; the default here is
the ``span`` output projections ending at the last block but one, on any supported family.

Limits: gate and up projections are not edited. The statistics are kept per layer (the reference
code shares one per weight shape). The value step grows as lr d_in sqrt(d_out) (||k^||^2 is about d_in, ||g^|| about
sqrt(d_out)), so lr must be set per model: the paper's 1e-6 gives steps of about 1 on 7B models.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import EditRequest
from workbench.edit.session import EditResult
from workbench.edit.spread import mass_edit_layers
from workbench.edit.stats import solve_or_explain
from workbench.errors import InvalidRequestError
from workbench.state import state_of
from workbench.tokens import pad_right, teacher_forced_rows


@dataclass(frozen=True)
class UltraEditHyperParams:
    """UltraEdit's settings.

    Attributes:
        span: layers edited, ending at the edit layer (default: the last block but one).
        lr: the step of the normalised gradient (the paper's 1e-6 on 14k-16k wide MLPs).
        ridge: the weight of ||Delta||^2 in the regression (the paper's 1).
        micro_batch: edits per forward and backward pass (the paper's 10).
    """

    span: int = 5
    lr: float = 1e-6
    ridge: float = 1.0
    micro_batch: int = 10

    def __post_init__(self) -> None:
        if self.span < 1 or self.micro_batch < 1 or self.lr <= 0 or self.ridge <= 0:
            raise InvalidRequestError(f"UltraEdit needs span, micro_batch >= 1 and lr, ridge > 0; got {self}")


@dataclass
class RunningStandardiser:
    """Per-dimension running mean and variance of every row seen so far (pooled, float64)."""

    count: int
    mean: Float[torch.Tensor, "d"]
    squares: Float[torch.Tensor, "d"]
    """Sum of squared deviations from the mean (M2)."""

    @classmethod
    def empty(cls, width: int, device) -> RunningStandardiser:
        zeros = torch.zeros(width, dtype=torch.float64, device=device)
        return cls(0, zeros, zeros.clone())

    def copy(self) -> RunningStandardiser:
        return RunningStandardiser(self.count, self.mean.clone(), self.squares.clone())

    def update(self, rows: Float[torch.Tensor, "n d"]) -> None:
        """Pool ``rows`` in (Chan, Golub and LeVeque's update of mean and M2)."""
        rows = rows.double()
        n, batch_mean = len(rows), rows.mean(0)
        batch_squares = ((rows - batch_mean) ** 2).sum(0)
        delta, total = batch_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.squares = self.squares + batch_squares + delta**2 * self.count * n / total
        self.count = total

    def standardise(self, rows: Float[torch.Tensor, "n d"], eps: float = 1e-8) -> Float[torch.Tensor, "n d"]:
        std = (self.squares / max(self.count - 1, 1)).sqrt()
        return (rows.double() - self.mean) / (std + eps)


def normaliser(model: TransformerBridge, layer: int) -> RunningStandardiser:
    """The running statistics of ``layer``'s rows on ``model`` (empty before its first UltraEdit edit)."""
    projection = families.mlp_out_projection(model, layer)
    return state_of(model).normalisers.setdefault(
        layer, RunningStandardiser.empty(projection.d_in + projection.d_out, model.cfg.device))


def forget_normalisers(model: TransformerBridge) -> None:
    """Forget ``model``'s running statistics: for code that puts the weights back without restoring
    each edit (the scaling runner restores a copy of all parameters)."""
    state_of(model).normalisers.clear()


def key_gradient_rows(model: TransformerBridge, requests: Sequence[EditRequest], layers: Sequence[int],
                      micro_batch: int) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per layer, the MLP keys [n, d_mlp] and the loss gradients at the projection's output
    [n, d_model] at every target-predicting position (n: target tokens of all requests)."""
    rows, predicted = teacher_forced_rows(model, [r.filled_prompt() for r in requests], [r.target_new for r in requests])
    keys: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    gradients: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    for start in range(0, len(rows), micro_batch):
        chunk = [p for p in predicted if start <= p[0] < start + micro_batch]
        at_row, at_pos, token = (torch.tensor(c, device=model.cfg.device) for c in zip(*chunk))
        at_row = at_row - start
        outputs: dict[int, torch.Tensor] = {}

        def read_key(layer: int):
            def hook(activation, hook=None):
                keys[layer].append(activation[at_row, at_pos].detach().double())
            return hook

        def keep_output(layer: int):
            def hook(activation, hook=None):
                activation.requires_grad_(True)
                outputs[layer] = activation
                return activation
            return hook

        hooks = [(families.Hooks.mlp_key(l), read_key(l)) for l in layers]
        hooks += [(families.Hooks.mlp_value(l), keep_output(l)) for l in layers]
        input_ids = pad_right(rows[start : start + micro_batch], model.tokenizer.pad_token_id, model.cfg.device)
        with torch.enable_grad():
            logits = model.run_with_hooks(input_ids, return_type="logits", fwd_hooks=hooks).float()
            nll = -logits[at_row, at_pos].log_softmax(-1).gather(1, token[:, None]).mean()
            grads = torch.autograd.grad(nll, [outputs[l] for l in layers])
        for layer, grad in zip(layers, grads):
            gradients[layer].append(grad[at_row, at_pos].double())
    return {layer: (torch.cat(keys[layer]), torch.cat(gradients[layer])) for layer in layers}


def ridge_update(keys: Float[torch.Tensor, "n d_in"], values: Float[torch.Tensor, "n d_out"],
                 ridge: float) -> Float[torch.Tensor, "d_out d_in"]:
    """Delta^T with Delta = (K^T K + ridge I)^-1 K^T V, in float64."""
    keys, values = keys.double(), values.double()
    system = keys.T @ keys + ridge * torch.eye(keys.shape[1], dtype=torch.float64, device=keys.device)
    return solve_or_explain(system, keys.T @ values).T


def default_last_layer(model: TransformerBridge) -> int:
    """The last layer UltraEdit edits by default: the last block but one, as in the authors' configurations."""
    return max(0, families.n_layers(model) - 2)


def apply_ultraedit(result: EditResult, requests: list[EditRequest], layer: int | Sequence[int] | None,
                    hparams: UltraEditHyperParams, progress: bool = False) -> None:
    """Write ``requests`` as one UltraEdit turn into the MLP output projections of the layers."""
    model = result.model
    layers = mass_edit_layers(model, default_last_layer(model) if layer is None else layer, hparams.span)
    found = key_gradient_rows(model, requests, layers, hparams.micro_batch)
    saved = {l: normaliser(model, l).copy() for l in layers}
    for l in layers:
        keys, gradients = found[l]
        rows = torch.cat([keys, gradients], dim=1)  # [n, d_mlp + d_model]
        statistics = normaliser(model, l)
        statistics.update(rows)
        standard = statistics.standardise(rows)
        standard_keys, standard_gradients = standard[:, : keys.shape[1]], standard[:, keys.shape[1]:]
        values = -hparams.lr * standard_keys.pow(2).sum(1, keepdim=True) * standard_gradients  # [n, d_model]
        projection = families.mlp_out_projection(model, l)
        result.apply_delta(projection.name, projection.to_stored(ridge_update(keys, values, hparams.ridge)))
    result.on_restore(lambda: state_of(model).normalisers.update(saved))
    result.info.update({"layers": layers, "rows": len(found[layers[0]][0]),
                        "edits_seen": normaliser(model, layers[0]).count})
