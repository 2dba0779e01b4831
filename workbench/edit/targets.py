"""The vector an editor must write: found by gradient descent, for many requests at once.

ROME (Meng et al. 2022, section 3.1, "choosing v*") and MEMIT (Meng et al. 2023, section 4.3,
"computing z_i") both look for a vector delta_i that, added to an activation at the subject's last
token, makes the model complete request i's prompt with ``target_new``:

    minimise  mean NLL(target_new | prompt in each context, delta_i)
              + kl_factor * KL(p(. | "{subject} is a", delta_i) || p(. | "{subject} is a"))
              + weight_decay * ||delta_i|| / ||v_i||^2,     subject to ||delta_i|| <= clamp * ||v_i||,

where v_i is the activation being changed (ROME: the MLP output of the edit layer; MEMIT: the
residual stream after the last edited layer). The requests are independent, so they are optimised
together: each row of a batch carries one request's delta, a request stops moving once its NLL is
below ``stop_loss`` (and its rows leave the batch), and batches are chunked to bound memory. The
reference implementations optimise one request at a time. The KL direction and the form of the weight decay follow the
reference implementation; the last step only measures (the delta returned is the one measured).

Each step re-runs only the tokens from the subject's last token on (:mod:`workbench.edit.cut_rows`:
nothing before it depends on delta) and unembeds only the positions the loss reads; the unedited
activations (v_i, the KL reference, ROME's key) are read in the first step, where delta is zero.

Inside :func:`remembering_searches`, a search repeated with the same arguments on the same weights
and tokenizer returns what the first one found (the search is deterministic given them): settings
that differ only in how the targets are written, such as MEMIT's lambda or AlphaEdit's l2 term on
the same requests, then search once between them.
"""
from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import EditRequest
from workbench.edit.contexts import context_rows
from workbench.edit.cut_rows import CutRows, cut_rows
from workbench.edit.scoped import ScopedMemory
from workbench.edit.stats import weights_fingerprint
from workbench.errors import InvalidRequestError
from workbench.models import frozen_weights
from workbench.precision import check_compute_dtype, computing_in
from workbench.tokens import target_ids


@dataclass(frozen=True)
class ValueSearch:
    """Settings of the search for delta (one field per term of the objective above)."""

    steps: int = 25
    lr: float = 0.5
    weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    stop_loss: float = 5e-2
    dtype: str = "float32"
    """``"bfloat16"`` runs each step's forward and backward under bfloat16 autocast (delta, the
    loss and the optimiser stay float32); faster on CPUs with bfloat16 matrix units."""
    stop_on: str = "token_mean"
    """What ``stop_loss`` bounds: ``"token_mean"``, the mean NLL over the target's tokens (the
    reference implementations), or ``"target"``, the NLL of the whole target (the sum), which is
    what the CounterFact metrics compare. Under the mean, a long target stops with its first token
    still unlikely, because the later ones follow from it almost surely."""

    def __post_init__(self) -> None:
        check_compute_dtype(self.dtype)
        if self.stop_on not in STOP_MEASURES:
            raise InvalidRequestError(f"stop_on {self.stop_on!r}: choose one of {STOP_MEASURES}")


STOP_MEASURES = ("token_mean", "target")


@dataclass(frozen=True)
class TargetHyperParams:
    """Settings of the key-value editors' keys and targets (ROME, MEMIT, AlphaEdit): the search for
    delta, the context prefixes of keys and targets, the statistics sample. Defaults follow ROME's
    GPT-2 XL values where they transfer.

    Attributes:
        v_steps: gradient steps for delta (the reference uses 20 on GPT-2 XL).
        v_lr: Adam learning rate for delta.
        v_weight_decay: weight of ||delta|| / ||v||^2 in the loss (the reference implementation's form).
        clamp_norm_factor: ||delta|| is kept below this multiple of ||v||.
        kl_factor: weight of the KL term on the "{subject} is a" prompt.
        prefixes: (length in tokens, count) of random prefixes sampled from the model for k* and v*.
        stop_loss: stop the optimisation once the target's NLL falls below this.
        stop_on: ``"token_mean"`` (the NLL averaged over the target's tokens, as the reference) or
            ``"target"`` (the whole target's NLL, what the metrics compare); see
            :class:`workbench.edit.targets.ValueSearch`.
        mom2_n_samples: texts of the corpus used for C (all if None).
        seed: seeds the prefixes.
        v_dtype: ``"float32"`` or ``"bfloat16"`` (autocast) for the search's forward and backward passes.
    """

    v_steps: int = 25
    v_lr: float = 0.5
    v_weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    prefixes: tuple[tuple[int, int], ...] = ((5, 5), (10, 5))
    stop_loss: float = 5e-2
    mom2_n_samples: int | None = None
    seed: int = 0
    v_dtype: str = "float32"
    stop_on: str = "token_mean"

    def value_search(self) -> ValueSearch:
        """The settings of the search for delta (:mod:`workbench.edit.targets`)."""
        return ValueSearch(self.v_steps, self.v_lr, self.v_weight_decay, self.clamp_norm_factor,
                           self.kl_factor, self.stop_loss, self.v_dtype, self.stop_on)


@dataclass(frozen=True)
class ValueDeltas:
    """The result of :func:`optimise_value_deltas`."""

    deltas: Float[torch.Tensor, "n d_model"]
    original: Float[torch.Tensor, "n d_model"]
    """The activation v_i at the subject's last token of each request's unprefixed prompt."""
    steps: list[int]
    final_nll: list[float]
    read: Float[torch.Tensor, "n d_read"] | None = None
    """With ``read_hook``: that activation at the subject's last token, averaged over the contexts
    (float64); ROME's key k* when ``read_hook`` is the MLP key hook of the edited layer."""


_REMEMBERED: ScopedMemory[dict[tuple, ValueDeltas]] = ScopedMemory("value_searches_remembered", pinned_weights=False)
"""The searches made, by their arguments and the weights (SHA-256) they ran on."""


@contextlib.contextmanager
def remembering_searches(model: TransformerBridge) -> Iterator[None]:
    """Inside, :func:`optimise_value_deltas` on ``model`` with arguments and weights (SHA-256) it has
    already searched with returns a copy of that result instead of searching again. A tokenizer
    changed inside (another prompt prefix) turns the memory off."""
    with _REMEMBERED.holding(model, {}):
        yield


def optimise_value_deltas(
    model: TransformerBridge,
    hook_name: str,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    search: ValueSearch,
    *,
    chunk_requests: int = 32,
    read_hook: str | None = None,
    progress: bool = False,
) -> ValueDeltas:
    """delta_i for every request, added at ``hook_name`` (width ``d_model``) at the subject's last
    token in every context (``templates[0]`` must be the bare ``"{}"``); ``chunk_requests`` requests
    are optimised together in one batch. ``read_hook`` names an activation at or before
    ``hook_name``'s layer to read on the way (:attr:`ValueDeltas.read`). Remembered inside
    :func:`remembering_searches`."""
    remembered = _REMEMBERED.of(model)
    if remembered is None:
        return _searched(model, hook_name, requests, templates, search, chunk_requests, read_hook, progress)
    key = (weights_fingerprint(model), hook_name, tuple(requests), tuple(templates), search, chunk_requests, read_hook)
    if key not in remembered:
        remembered[key] = _searched(model, hook_name, requests, templates, search, chunk_requests, read_hook, progress)
    found = remembered[key]
    return dataclasses.replace(found, deltas=found.deltas.clone(), original=found.original.clone(),
                               steps=list(found.steps), final_nll=list(found.final_nll),
                               read=None if found.read is None else found.read.clone())


def _searched(model: TransformerBridge, hook_name: str, requests: Sequence[EditRequest], templates: Sequence[str],
              search: ValueSearch, chunk_requests: int, read_hook: str | None, progress: bool) -> ValueDeltas:
    """The search of :func:`optimise_value_deltas`, chunk by chunk."""
    chunks = [requests[i : i + chunk_requests] for i in range(0, len(requests), chunk_requests)]
    with frozen_weights(model):
        parts = [
            _optimise_chunk(model, hook_name, chunk, templates, search, read_hook)
            for chunk in tqdm(chunks, desc="target vectors", disable=not progress or len(chunks) < 2)
        ]
    return ValueDeltas(
        deltas=torch.cat([p.deltas for p in parts]),
        original=torch.cat([p.original for p in parts]),
        steps=[s for p in parts for s in p.steps],
        final_nll=[v for p in parts for v in p.final_nll],
        read=torch.cat([p.read for p in parts]) if read_hook is not None else None,
    )


@dataclass(frozen=True)
class _SearchBatch:
    """The rows one chunk's search runs (every request's prompt rows, teacher forced, then its
    essence prompt) and where the loss reads their logits, which come back flattened in row-major
    order of the positions in ``predict``."""

    rows: CutRows
    owner: Int[torch.Tensor, "rows"]
    """The request of each row."""
    n_prompt_rows: int
    n_templates: int
    predict: Bool[torch.Tensor, "rows pos"]
    """The positions whose next-token logits the loss reads."""
    target_logit: Int[torch.Tensor, "entries"]
    """Flattened logit of each target token of each prompt row."""
    essence_logit: Int[torch.Tensor, "n"]
    """Flattened logit after each request's essence prompt."""
    token: Int[torch.Tensor, "entries"]
    token_owner: Int[torch.Tensor, "entries"]
    tokens_per_request: Float[torch.Tensor, "n"]
    contexts_per_request: Float[torch.Tensor, "n"]

    @property
    def unprefixed(self) -> slice:
        """Each request's own prompt row (without a context prefix), ``n`` of them."""
        return slice(0, self.n_prompt_rows, self.n_templates)


def _search_batch(model: TransformerBridge, requests: Sequence[EditRequest], templates: Sequence[str]) -> _SearchBatch:
    device, n = model.cfg.device, len(requests)
    contexts = context_rows(model, requests, templates)
    targets = [target_ids(model, request.target_new) for request in requests]
    essence = context_rows(model, [_essence_request(r) for r in requests], ["{}"])
    prompt_rows = [row + targets[owner][:-1] for row, owner in zip(contexts.rows, contexts.request_of_row)]
    rows = cut_rows(model, prompt_rows + essence.rows, contexts.subject_last + essence.subject_last)
    owner = torch.tensor(contexts.request_of_row + list(range(n)), device=device)  # [rows]
    n_prompt_rows = len(prompt_rows)
    # each target token of each prompt row, and the next token after each essence prompt
    predicted = [(r, rows.index_of(r, len(contexts.rows[r]) - 1 + k)) for r in range(n_prompt_rows)
                 for k in range(len(targets[contexts.request_of_row[r]]))]
    predicted += [(n_prompt_rows + i, rows.index_of(n_prompt_rows + i, len(row) - 1)) for i, row in enumerate(essence.rows)]
    predict = torch.zeros_like(rows.input_ids, dtype=torch.bool)
    predict[tuple(torch.tensor(predicted, device=device).T)] = True
    flat_index = {pair: k for k, pair in enumerate(map(tuple, predict.nonzero().tolist()))}
    n_target_entries = sum(len(targets[o]) for o in contexts.request_of_row)
    token_owner = torch.tensor([o for o in contexts.request_of_row for _ in targets[o]], device=device)
    return _SearchBatch(
        rows=rows, owner=owner, n_prompt_rows=n_prompt_rows, n_templates=contexts.n_templates, predict=predict,
        target_logit=torch.tensor([flat_index[pair] for pair in predicted[:n_target_entries]], device=device),
        essence_logit=torch.tensor([flat_index[pair] for pair in predicted[n_target_entries:]], device=device),
        token=torch.tensor([t for o in contexts.request_of_row for t in targets[o]], device=device),
        token_owner=token_owner,
        tokens_per_request=torch.bincount(token_owner, minlength=n).double(),
        contexts_per_request=torch.bincount(owner[:n_prompt_rows], minlength=n).double(),
    )


def _optimise_chunk(
    model: TransformerBridge,
    hook_name: str,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    search: ValueSearch,
    read_hook: str | None,
) -> ValueDeltas:
    device, n = model.cfg.device, len(requests)
    batch = _search_batch(model, requests, templates)
    rows, owner, n_prompt_rows, unprefixed = batch.rows, batch.owner, batch.n_prompt_rows, batch.unprefixed
    all_rows = torch.arange(len(owner), device=device)

    delta = torch.zeros(n, model.cfg.d_model, device=device, requires_grad=True)
    first: dict[str, torch.Tensor] = {}  # activations of step 0, where delta is still zero

    # the rows run at this step: those of requests whose search is still running
    running = {"batch": all_rows, "edit_index": rows.edit_index, "owner": owner}

    def add_delta(activation, hook=None):
        if "original" not in first:
            first["original"] = activation[all_rows[unprefixed], rows.edit_index[unprefixed]].detach().float()
        # in place: the bridge passes on the tensor it handed to the hook
        activation[running["batch"], running["edit_index"]] += delta[running["owner"]].to(activation.dtype)
        return activation

    def read(activation, hook=None):
        if "read" not in first:
            first["read"] = activation[all_rows[:n_prompt_rows], rows.edit_index[:n_prompt_rows]].detach().double()
        return activation

    hooks = [(hook_name, add_delta)] + ([(read_hook, read)] if read_hook is not None else [])
    done = torch.zeros(n, dtype=torch.bool, device=device)
    steps = torch.zeros(n, dtype=torch.long)
    final_nll = torch.full((n,), float("nan"), dtype=torch.float64)
    optimiser = torch.optim.Adam([delta], lr=search.lr)
    original_log_probs = original_norm = max_norm = None
    entry_row = batch.predict.nonzero()[:, 0]  # [predicted]: the row of each flattened logit
    autocast = computing_in(search.dtype, device)
    for step in range(search.steps):
        with autocast:
            logits = _run_running_rows(model, rows, batch.predict, hooks, ~done[owner], entry_row, running, owner)
        token_log_probs = logits[batch.target_logit].log_softmax(-1).gather(1, batch.token[:, None])[:, 0]  # [entries]
        target_nll = torch.zeros(n, device=device, dtype=torch.float64).index_add(0, batch.token_owner,
                                                                                 -token_log_probs.double())
        nll = (target_nll / batch.tokens_per_request).float()  # [n], the mean over each request's target tokens
        essence_log_probs = logits[batch.essence_logit].log_softmax(-1)  # [n, vocab]
        if step == 0:
            original_log_probs = essence_log_probs.detach()
            original_norm = first["original"].norm(dim=-1)  # [n]
            max_norm = search.clamp_norm_factor * original_norm
        # KL(p_edited || p_original), as the reference implementation computes it
        kl = torch.nn.functional.kl_div(original_log_probs, essence_log_probs, log_target=True, reduction="none").sum(-1)
        decay = search.weight_decay * delta.norm(dim=-1) / original_norm.clamp_min(1e-12) ** 2
        stopping = nll.detach() if search.stop_on == "token_mean" else target_nll.detach() / batch.contexts_per_request
        newly_done = (stopping < search.stop_loss) & ~done
        steps[(~done).cpu()] = step + 1
        final_nll[(~done).cpu()] = nll.detach().double().cpu()[(~done).cpu()]
        done |= newly_done
        if done.all() or step == search.steps - 1:
            break
        loss = (nll + search.kl_factor * kl + decay)[~done].sum()
        (gradient,) = torch.autograd.grad(loss, [delta])
        frozen = delta.detach().clone()
        delta.grad = gradient
        optimiser.step()
        with torch.no_grad():
            delta[done] = frozen[done]
            norms = delta.norm(dim=-1)
            delta.mul_((max_norm / norms.clamp_min(1e-12)).clamp(max=1.0)[:, None])
    read = first["read"].view(n, batch.n_templates, -1).mean(1) if read_hook is not None else None
    return ValueDeltas(delta.detach(), first["original"], steps.tolist(), final_nll.tolist(), read)


def _run_running_rows(
    model: TransformerBridge, rows: CutRows, predict: torch.Tensor, hooks: list, row_running: torch.Tensor,
    entry_row: torch.Tensor, running: dict, owner: torch.Tensor,
) -> Float[torch.Tensor, "predicted vocab"]:
    """Logits at every predicted position, computed for the rows in ``row_running`` only (the
    others, whose requests are done, read as zeros and are left out of the loss)."""
    if bool(row_running.all()):
        running.update(batch=torch.arange(len(owner), device=owner.device), edit_index=rows.edit_index, owner=owner)
        return rows.run(model, predict, hooks).float()
    kept = row_running.nonzero()[:, 0]  # [k], ascending
    subset = rows.select(kept)
    running.update(batch=torch.arange(len(kept), device=owner.device), edit_index=subset.edit_index, owner=owner[kept])
    partial = subset.run(model, predict[kept], hooks).float()  # [predicted in kept rows, vocab]
    entries = row_running[entry_row].nonzero()[:, 0]
    return partial.new_zeros(len(entry_row), partial.shape[-1]).index_copy(0, entries, partial)


def _essence_request(request: EditRequest) -> EditRequest:
    """The "{subject} is a" prompt whose next-token distribution the KL term preserves."""
    return EditRequest("{} is a", request.subject, request.target_new)
