"""MEND (Mitchell et al. 2022, "Fast Model Editing at Scale"): a trained network turns a fine-tuning gradient into an edit.

For a linear layer ``y = W u``, the gradient of a loss over one sequence is a sum of rank-one
outer products, one per token: ``dL/dW = sum_t delta_t u_t^T``, with ``u_t`` the layer's input and
``delta_t`` the gradient at its output. MEND keeps that structure and transforms the factors: a
small network per edited matrix maps ``(u_t, delta_t)`` to ``(u~_t, delta~_t)``, and the edit is
``W <- W - alpha * sum_t delta~_t u~_t^T`` with a learned step ``alpha`` per layer. The networks
are trained so that the edited model gives the new target on *paraphrases* of the edit prompt (the
edit loss) and keeps its next-token distributions on unrelated prompts (a KL locality loss); the
model's own weights are frozen throughout. Editing then costs one forward and backward pass of the
request plus the small networks per step: no optimisation loop.

Here the edited matrices are the MLP output projections of ``layers``. Three choices differ from
the paper, all measured on smollm2-135m (held-out facts it knows; see ``docs/concepts/mend.md``):

* **Where.** The paper edits the last three blocks. A bundled model's networks edit the block
  causal tracing recommends and the two after it (:func:`mend_layers`), where the subject's
  recall is written: at the last blocks an edit can only act on the prompt's last token, so it
  reaches paraphrases badly and moves every prompt that ends alike.
* **Which tokens.** The paper sums the factors of every token; here, by default, only the
  subject's tokens (``subject_tokens``, the request names them, as for ROME and MEMIT): the
  template's tokens are shared with unrelated prompts, and an update built on them moves those.
* **How many steps.** The paper applies the networks once. By default here they are applied in quarter
  steps, each from the gradient on the edited model, until each request's new target is more likely
  than not (:class:`MendHyperParams`): one step left near misses (ES 88 on held-out facts), and small
  steps that stop per request move fewer neighbours than one large step (ES / NS 100 / 99.6).

Each network is the paper's low-rank MLP with a
residual connection, initialised to the identity (so before training an edit is one plain gradient
step), reading the factors standardised by statistics taken from the training data. Training
batches several edits and applies their summed update, so the networks learn edits that hold
together in a batch; each request's factors come from its own mean target NLL, so its update is
the one it gets alone, whatever the batch size. The edit loss is scored on the edit prompt and
one paraphrase of each edit. Training computes the residual stream entering the first edited block once
per example (the frozen blocks below do not depend on the edit) and runs the blocks from there.

Limits: trained per model (for the bundled models on first use, from the same records as SERAC's
classifier, about 20 minutes on 2 cores); updates have rank up to the number of subject tokens; the networks learn updates that hold together in batches of
``batch_edits``: thousands of summed updates can interfere (``step_scale`` below 1 shrinks them).
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float
from torch import nn
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import CounterFactRecord, EditRequest
from workbench.edit.layers import N_FACTS, default_edit_layer
from workbench.edit.session import EditResult
from workbench.edit.trained import bundled_component, read_component, save_component
from workbench.errors import InvalidRequestError
from workbench.models import frozen_weights, record_of
from workbench.tokens import locate_subject, pad_right, target_ids

NETWORK_VERSION = "mend-v3"
"""Folder name of the cached networks of bundled models; change it when training changes."""


class FactorNetwork(nn.Module):
    """``(u, delta) -> (u~, delta~)`` for one matrix: standardise, low-rank MLP, residual, identity at init."""

    def __init__(self, d_in: int, d_out: int, rank: int) -> None:
        super().__init__()
        self.d_in = d_in
        width = d_in + d_out
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("std", torch.ones(width))
        self.down = nn.Linear(width, rank)
        self.up = nn.Linear(rank, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, u: Float[torch.Tensor, "tokens d_in"], delta: Float[torch.Tensor, "tokens d_out"]):
        z = (torch.cat([u, delta], dim=-1) - self.mean) / self.std
        z = z + self.up(torch.relu(self.down(z)))
        z = z * self.std + self.mean
        return z[:, : self.d_in], z[:, self.d_in :]


class MendNetworks(nn.Module):
    """One :class:`FactorNetwork` and one learned log step per edited layer."""

    def __init__(self, layers: Sequence[int], d_in: int, d_out: int, rank: int = 64, log_step: float = -6.0,
                 subject_tokens: bool = False) -> None:
        super().__init__()
        self.layers, self.rank, self.subject_tokens = list(layers), rank, subject_tokens
        self.networks = nn.ModuleList(FactorNetwork(d_in, d_out, rank) for _ in self.layers)
        self.log_steps = nn.Parameter(torch.full((len(self.layers),), log_step))
        self.info: dict = {}
        """How they were trained (records, steps, losses), saved with them."""

    def updates(self, factors: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> dict[int, Float[torch.Tensor, "d_out d_in"]]:
        """The change of each edited layer's ``[d_out, d_in]`` matrix from its factors (all tokens of
        all requests: ``u [tokens, d_in]``, ``delta [tokens, d_out]``)."""
        changes = {}
        for index, layer in enumerate(self.layers):
            u, delta = factors[layer]
            u_new, delta_new = self.networks[index](u, delta)
            changes[layer] = -self.log_steps[index].exp() * delta_new.T @ u_new
        return changes

    def save(self, path: str | Path, *, model_name: str) -> Path:
        """``path/mend.safetensors`` and ``path/mend.json`` (layers, shapes, the model, training)."""
        first = self.networks[0]
        meta = {**self.info, "layers": self.layers, "rank": self.rank, "subject_tokens": self.subject_tokens, "d_in": first.d_in,
                "d_out": first.mean.numel() - first.d_in, "model": model_name}
        return save_component(self, path, "mend", meta)

    @classmethod
    def load(cls, path: str | Path, model: TransformerBridge) -> MendNetworks:
        """Networks saved by :meth:`save`, checked against ``model``'s layers and shapes."""
        meta, state = read_component(path, "mend", "MEND networks")
        fits = max(meta["layers"]) < model.cfg.n_layers and all(
            (projection.d_in, projection.d_out) == (meta["d_in"], meta["d_out"])
            for projection in (families.mlp_out_projection(model, l) for l in meta["layers"]))
        if not fits:
            raise InvalidRequestError(f"the MEND networks under {path} were trained for {meta['model']!r} "
                                      f"(layers {meta['layers']}); they do not fit this model")
        networks = cls(meta["layers"], meta["d_in"], meta["d_out"], meta["rank"], subject_tokens=meta["subject_tokens"])
        networks.load_state_dict(state)
        networks.info = meta
        return networks.eval()


@dataclass
class _Rows:
    """Token rows of (prompt + target) sequences and the positions whose predictions are scored."""

    ids: torch.Tensor  # [rows, width], right-padded
    predict: torch.Tensor  # [rows, width] bool: positions predicting a target token
    tokens: torch.Tensor  # [predicted]: the token each predicting position should give
    factored: torch.Tensor  # [rows, width] bool: positions whose gradient factors are taken
    weights: torch.Tensor  # [predicted]: 1 / the number of target tokens of its row


def _target_rows(model: TransformerBridge, prompts: Sequence[str], targets: Sequence[str]) -> _Rows:
    rows, predicted, wanted, weights = [], [], [], []
    for row, (prompt, target) in enumerate(zip(prompts, targets)):
        prompt_ids, answer = model.tokenizer(prompt)["input_ids"], target_ids(model, target)
        rows.append(prompt_ids + answer[:-1])
        predicted += [(row, len(prompt_ids) - 1 + k) for k in range(len(answer))]
        wanted += answer
        weights += [1 / len(answer)] * len(answer)
    ids = pad_right(rows, model.tokenizer.pad_token_id or 0, model.cfg.device)
    predict = torch.zeros_like(ids, dtype=torch.bool)
    predict[tuple(torch.tensor(predicted, device=ids.device).T)] = True
    factored = torch.zeros_like(ids, dtype=torch.bool)
    for row, tokens in enumerate(rows):
        factored[row, : len(tokens)] = True
    # ``predicted`` runs row by row, positions ascending: the row-major order the logits come back in
    return _Rows(ids, predict, torch.tensor(wanted, device=ids.device), factored, torch.tensor(weights, device=ids.device))


def _edit_rows(model: TransformerBridge, requests: Sequence[EditRequest], subject_tokens: bool) -> _Rows:
    """The rows of edit requests; with ``subject_tokens``, factors are taken at the subject's tokens only."""
    rows = _target_rows(model, [r.filled_prompt() for r in requests], [r.target_new for r in requests])
    if subject_tokens:
        rows.factored.zero_()
        for row, request in enumerate(requests):
            span = locate_subject(model, request.filled_prompt(), request.subject)
            rows.factored[row, span.start: span.end] = True
    return rows


def _run_edited_blocks(model: TransformerBridge, hidden: torch.Tensor, first: int, predict: torch.Tensor,
                       changes: dict[int, torch.Tensor], captures: dict | None = None) -> torch.Tensor:
    """Logits at ``predict`` when ``hidden`` enters block ``first`` and each edited layer's MLP
    output projection computes ``(W + change) u``; with ``captures``, each projection's input and
    a zero tensor added to its output (whose gradient is the output's) are recorded there."""
    handles = []
    for layer in sorted({*changes, *(captures or {})}):
        def hook(module, args, output, layer=layer):
            u = args[0]
            if layer in changes:
                output = output + u @ changes[layer].T.to(u.dtype)
            if captures is not None and layer in captures:
                probe = torch.zeros_like(output, requires_grad=True)  # d loss / d probe = d loss / d output
                output = output + probe
                captures[layer] = (u.detach(), probe)
            return output
        handles.append(families.mlp_out_projection(model, layer).module.register_forward_hook(hook))
    try:
        return families.run_from_block(model, first, hidden, use_cache=False, logits_to_keep=predict).logits.float()
    finally:
        for handle in handles:
            handle.remove()


def gradient_factors(model: TransformerBridge, rows: _Rows, hidden: torch.Tensor, first: int,
                     layers: Sequence[int]) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """``(u [tokens, d_in], delta [tokens, d_out])`` of each layer's MLP output projection, over every
    real token of every row, for the sum over rows of each row's mean target NLL: a row's factors are
    those it has alone, whatever the batch (a batch's update is the sum of its rows' updates)."""
    captures: dict = dict.fromkeys(layers)
    with torch.enable_grad():
        logits = _run_edited_blocks(model, hidden, first, rows.predict, {}, captures)
        loss = _row_nll(logits, rows).sum()
        outputs = [captures[layer][1] for layer in layers]
        gradients = torch.autograd.grad(loss, outputs)
    return {layer: (captures[layer][0][rows.factored].float(), gradient[rows.factored].float())
            for layer, gradient in zip(layers, gradients)}


@dataclass(frozen=True)
class MendHyperParams:
    """Attributes:
        networks: a folder written by :meth:`MendNetworks.save`; ``None`` takes the bundled model's
            networks (trained and cached on first use).
        step_scale: multiplies the learned steps (1: as trained).
        max_steps: applications of the networks (1: the paper's single step). After each, the requests
            whose new target is not yet more likely than not on the edited model (mean target NLL above
            ``stop_loss``) get another, from their gradient on the edited model.

    The defaults, a quarter of the trained step up to 16 times, were chosen on smollm2-135m's 60 first tuning
    cases, each edited alone (ES / PS / NS): one trained step 88.3 / 85.0 / 91.4; full steps up to 2, 3, 5
    times 96.7 / 91.7 / 89.4, 98.3 / 92.5 / 89.3, 100 / 94.2 / 89.4; half steps up to 8 times 100 / 92.5 /
    95.6; quarter steps up to 16 times 100 / 90.8 / 98.3; eighth steps up to 32 times 100 / 87.5 / 98.8.
    Small steps stop each request soon after its target takes over, so fewer neighbours move.
    """

    networks: str | None = None
    step_scale: float = 0.25
    max_steps: int = 16
    stop_loss: float = 0.69

    def __post_init__(self) -> None:
        if not self.step_scale > 0:
            raise InvalidRequestError(f"MEND step_scale must be positive, got {self.step_scale}")
        if self.max_steps < 1:
            raise InvalidRequestError(f"MEND max_steps must be at least 1, got {self.max_steps}")


def apply_mend(result: EditResult, requests: list[EditRequest], layer, hparams: MendHyperParams,
               progress: bool = False) -> None:
    """Write ``requests`` with the trained networks (per step, the summed update of the requests still
    pending, per edited layer), reversibly through ``result``."""
    if layer is not None:
        raise InvalidRequestError("MEND edits the layers its networks were trained for; leave layer out")
    model = result.model
    networks = (MendNetworks.load(Path(hparams.networks), model) if hparams.networks is not None
                else bundled_mend_networks(model))
    first = min(networks.layers)
    pending, stepped = list(requests), []
    while pending and len(stepped) < hparams.max_steps:
        rows = _edit_rows(model, pending, networks.subject_tokens)
        with frozen_weights(model):
            hidden = families.residual_entering(model, rows.ids, first)  # edits at ``first`` and above leave it as is
            factors = gradient_factors(model, rows, hidden, first, networks.layers)
            with torch.no_grad():
                changes = networks.updates(factors)
        for edited, change in changes.items():
            projection = families.mlp_out_projection(model, edited)
            result.apply_delta(projection.name, projection.to_stored(hparams.step_scale * change))
        stepped.append(len(pending))
        if len(stepped) < hparams.max_steps:  # a request whose new target is now more likely than not is done
            with torch.no_grad():
                nll = _row_nll(_run_edited_blocks(model, hidden, first, rows.predict, {}), rows)
            pending = [request for request, left in zip(pending, nll.tolist()) if left > hparams.stop_loss]
    result.info.update({"layers": networks.layers, "step_scale": hparams.step_scale, "requests_per_step": stepped,
                        "update_norms": {edited: result.deltas[families.mlp_out_projection(model, edited).name]
                                         .double().norm().item() for edited in networks.layers}})


def _row_nll(logits: Float[torch.Tensor, "predicted vocab"], rows: _Rows) -> Float[torch.Tensor, "rows"]:
    """Each row's mean target NLL from the logits at its predicting positions."""
    per_token = nn.functional.cross_entropy(logits, rows.tokens, reduction="none") * rows.weights
    row_of = rows.predict.nonzero()[:, 0]  # row-major, as the logits come back
    return torch.zeros(rows.ids.shape[0], device=per_token.device).index_add_(0, row_of, per_token)


@dataclass(frozen=True)
class MendTraining:
    """Settings of :func:`train_mend`. The paper weighs the edit loss 0.1 against locality 1; here
    1 (on smollm2-135m, 0.1 left edits too weak after the training a CPU affords; 0.5 against 1 on
    60 held-out cases: ES 83.3 / PS 78.3 / NS 97.3 against 88.3 / 80.0 / 95.4)."""

    layers: tuple[int, ...] | None = None
    """The edited blocks; ``None``: the last ``n_layers`` (the paper's choice)."""
    n_layers: int = 3
    rank: int = 64
    steps: int = 300
    batch_edits: int = 8
    lr: float = 1e-3
    step_lr: float = 3e-2
    """Learning rate of the log steps (they start where a plain gradient step changes each matrix
    by ``initial_change`` of its norm, and move in log space)."""
    initial_change: float = 0.005
    edit_weight: float = 1.0
    locality_weight: float = 1.0
    subject_tokens: bool = True
    """Take the gradient factors at the subject's tokens only (the paper: every token)."""
    seed: int = 0


def train_mend(model: TransformerBridge, records: Sequence[CounterFactRecord], settings: MendTraining = MendTraining(),
               *, progress: bool = True) -> MendNetworks:
    """Train MEND's networks on ``records``: each step edits ``batch_edits`` of them at once (their
    prompts and new targets), then scores the edited model on one paraphrase of each (edit loss,
    NLL of the new target) and on one neighbourhood prompt of each (KL from the unedited model's
    next-token distribution at the prompt's last token)."""
    usable = [r for r in records if r.paraphrase_prompts and r.neighborhood_prompts]
    if len(usable) < settings.batch_edits:
        raise InvalidRequestError(f"MEND training needs at least {settings.batch_edits} records with paraphrases "
                                  f"and neighbours, got {len(usable)}")
    layers = (list(settings.layers) if settings.layers is not None
              else list(range(model.cfg.n_layers - settings.n_layers, model.cfg.n_layers)))
    first = layers[0]
    torch.manual_seed(settings.seed)
    rng = random.Random(settings.seed)
    projection = families.mlp_out_projection(model, layers[-1])
    networks = MendNetworks(layers, projection.d_in, projection.d_out, settings.rank, subject_tokens=settings.subject_tokens)
    optimiser = torch.optim.Adam([{"params": networks.networks.parameters(), "lr": settings.lr},
                                  {"params": [networks.log_steps], "lr": settings.step_lr}])
    history = []
    with frozen_weights(model):
        _standardise(model, networks, usable[: 4 * settings.batch_edits], first, settings.initial_change)
        for _ in tqdm(range(settings.steps), desc="MEND networks", disable=not progress, unit="step"):
            batch = rng.sample(usable, settings.batch_edits)
            requests = [r.requested_rewrite for r in batch]
            edit_rows = _edit_rows(model, requests, networks.subject_tokens)
            factors = gradient_factors(model, edit_rows, families.residual_entering(model, edit_rows.ids, first),
                                       first, layers)
            changes = networks.updates(factors)
            scored = [rng.choice(r.paraphrase_prompts) for r in batch] + [q.filled_prompt() for q in requests]
            scored_rows = _target_rows(model, scored, [q.target_new for q in requests] * 2)
            edited = _run_edited_blocks(model, families.residual_entering(model, scored_rows.ids, first), first,
                                        scored_rows.predict, changes)
            edit_loss = nn.functional.cross_entropy(edited, scored_rows.tokens)
            locality_loss = _locality_loss(model, [rng.choice(r.neighborhood_prompts) for r in batch], first, changes)
            loss = settings.edit_weight * edit_loss + settings.locality_weight * locality_loss
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            history.append((edit_loss.item(), locality_loss.item()))
    head, tail = history[:20], history[-20:]
    networks.info = {"records": len(usable), **settings.__dict__,
                     "edit_loss_first_20": sum(h[0] for h in head) / len(head),
                     "edit_loss_last_20": sum(h[0] for h in tail) / len(tail),
                     "locality_kl_last_20": sum(h[1] for h in tail) / len(tail)}
    return networks.eval()


def _locality_loss(model: TransformerBridge, prompts: Sequence[str], first: int, changes: dict) -> torch.Tensor:
    """KL(unedited || edited) of the next-token distribution after each prompt."""
    encoded = [model.tokenizer(p)["input_ids"] for p in prompts]
    ids = pad_right(encoded, model.tokenizer.pad_token_id or 0, model.cfg.device)
    last = torch.zeros_like(ids, dtype=torch.bool)
    for row, tokens in enumerate(encoded):
        last[row, len(tokens) - 1] = True
    hidden = families.residual_entering(model, ids, first)
    with torch.no_grad():
        unedited = _run_edited_blocks(model, hidden, first, last, {}).log_softmax(-1)
    edited = _run_edited_blocks(model, hidden, first, last, changes).log_softmax(-1)
    return nn.functional.kl_div(edited, unedited, log_target=True, reduction="batchmean")


@torch.no_grad()
def _standardise(model: TransformerBridge, networks: MendNetworks, records: Sequence[CounterFactRecord], first: int,
                 initial_change: float) -> None:
    """Set each network's factor mean and std from the gradients of some training edits, and its
    step so that a plain gradient step on their mean gradient changes the matrix by ``initial_change``
    of its norm (one edit's own gradient is larger: the edits' gradients point different ways)."""
    requests = [r.requested_rewrite for r in records]
    rows = _edit_rows(model, requests, networks.subject_tokens)
    factors = gradient_factors(model, rows, families.residual_entering(model, rows.ids, first), first, networks.layers)
    for index, layer in enumerate(networks.layers):
        u, delta = factors[layer]
        z = torch.cat([u, delta], dim=-1)
        networks.networks[index].mean.copy_(z.mean(0))
        networks.networks[index].std.copy_(z.std(0).clamp_min(1e-8))
        per_edit = (delta.T @ u).norm() / len(records)
        networks.log_steps[index] = torch.log(initial_change * families.mlp_out_projection(model, layer).matrix().norm() / per_edit)


def mend_layers(model: TransformerBridge, peak: int, width: int = 3) -> list[int]:
    """``width`` consecutive blocks from the tracing ``peak`` on (moved down where they would pass the last block)."""
    start = max(0, min(families.check_layer(model, peak), model.cfg.n_layers - width))
    return list(range(start, start + width))


def bundled_mend_networks(model: TransformerBridge) -> MendNetworks:
    """The MEND networks of a bundled model: loaded from the cache, or trained there on first use
    (:mod:`workbench.edit.trained`: records whose subjects are not in the evaluation split), on the
    blocks from the model's causal-tracing peak on (its calibration's, else traced now on its known facts)."""
    return bundled_component(
        model, "mend", NETWORK_VERSION, what="MEND's networks",
        how="workbench.edit.mend.train_mend(model, records), .save(folder, model_name=...), then pass networks=<folder>",
        load=lambda folder: MendNetworks.load(folder, model),
        train=lambda records: train_mend(model, records, MendTraining(layers=tuple(mend_layers(model, _tracing_peak(model))))))


def _tracing_peak(model: TransformerBridge) -> int:
    record = record_of(model)
    settings = record.calibration()
    return settings.tracing_peak if settings is not None else default_edit_layer(model, record.known_facts(N_FACTS))
