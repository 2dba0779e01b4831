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
below ``stop_loss``, and batches are chunked to bound memory. The reference implementations
optimise one request at a time. The KL direction and the form of the weight decay follow the
reference implementation; the last step only measures (the delta returned is the one measured).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import EditRequest
from workbench.edit.contexts import context_rows
from workbench.models import frozen_weights
from workbench.tokens import pad_right, target_ids


@dataclass(frozen=True)
class ValueSearch:
    """Settings of the search for delta (one field per term of the objective above)."""

    steps: int = 25
    lr: float = 0.5
    weight_decay: float = 0.5
    clamp_norm_factor: float = 4.0
    kl_factor: float = 0.0625
    stop_loss: float = 5e-2


@dataclass(frozen=True)
class ValueDeltas:
    """The result of :func:`optimise_value_deltas`."""

    deltas: Float[torch.Tensor, "n d_model"]
    original: Float[torch.Tensor, "n d_model"]
    """The activation v_i at the subject's last token of each request's unprefixed prompt."""
    steps: list[int]
    final_nll: list[float]


def optimise_value_deltas(
    model: TransformerBridge,
    hook_name: str,
    requests: Sequence[EditRequest],
    templates: Sequence[str],
    search: ValueSearch,
    *,
    chunk_requests: int = 32,
    progress: bool = False,
) -> ValueDeltas:
    """delta_i for every request, added at ``hook_name`` at the subject's last token in every
    context (``templates[0]`` must be the bare ``"{}"``); ``chunk_requests`` requests are
    optimised together in one batch."""
    chunks = [requests[i : i + chunk_requests] for i in range(0, len(requests), chunk_requests)]
    with frozen_weights(model):
        parts = [
            _optimise_chunk(model, hook_name, chunk, templates, search)
            for chunk in tqdm(chunks, desc="target vectors", disable=not progress or len(chunks) < 2)
        ]
    return ValueDeltas(
        deltas=torch.cat([p.deltas for p in parts]),
        original=torch.cat([p.original for p in parts]),
        steps=[s for p in parts for s in p.steps],
        final_nll=[v for p in parts for v in p.final_nll],
    )


def _optimise_chunk(
    model: TransformerBridge, hook_name: str, requests: Sequence[EditRequest], templates: Sequence[str], search: ValueSearch
) -> ValueDeltas:
    device, n = model.cfg.device, len(requests)
    contexts = context_rows(model, requests, templates)
    targets = [target_ids(model, request.target_new) for request in requests]
    essence = context_rows(model, [_essence_request(r) for r in requests], ["{}"])
    prompt_rows = [row + targets[owner][:-1] for row, owner in zip(contexts.rows, contexts.request_of_row)]
    input_ids = pad_right(prompt_rows + essence.rows, model.tokenizer.pad_token_id, device)
    owner = torch.tensor(contexts.request_of_row + list(range(n)), device=device)  # [rows]
    positions = torch.tensor(contexts.subject_last + essence.subject_last, device=device)  # [rows]
    all_rows = torch.arange(len(owner), device=device)
    n_prompt_rows = len(prompt_rows)
    # one entry per (prompt row, target token): where the token is predicted and by which request
    flat = [(r, len(contexts.rows[r]) - 1 + k, token, contexts.request_of_row[r])
            for r in range(n_prompt_rows) for k, token in enumerate(targets[contexts.request_of_row[r]])]
    at_row, at_pos, token, token_owner = (torch.tensor(column, device=device) for column in zip(*flat))
    tokens_per_request = torch.bincount(token_owner, minlength=n).double()
    essence_rows = torch.arange(n_prompt_rows, len(owner), device=device)
    essence_last = torch.tensor([len(row) - 1 for row in essence.rows], device=device)

    with torch.no_grad():
        logits, cache = model.run_with_cache(input_ids, names_filter=lambda name: name == hook_name)
        original = cache[hook_name][all_rows, positions].float()[:: contexts.n_templates][:n]  # unprefixed rows
        original_log_probs = logits[essence_rows, essence_last].float().log_softmax(-1)  # [n, vocab]
    original_norm = original.norm(dim=-1)  # [n]
    max_norm = search.clamp_norm_factor * original_norm

    delta = torch.zeros(n, original.shape[-1], device=device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=search.lr)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    steps = torch.zeros(n, dtype=torch.long)
    final_nll = torch.full((n,), float("nan"), dtype=torch.float64)

    def add_delta(activation, hook=None):
        # in place: the bridge passes on the tensor it handed to the hook
        activation[all_rows, positions] += delta[owner].to(activation.dtype)
        return activation

    for step in range(search.steps):
        logits = model.run_with_hooks(input_ids, return_type="logits", fwd_hooks=[(hook_name, add_delta)]).float()
        token_log_probs = logits[at_row, at_pos].log_softmax(-1).gather(1, token[:, None])[:, 0]  # [tokens]
        nll = torch.zeros(n, device=device, dtype=torch.float64).index_add(0, token_owner, -token_log_probs.double())
        nll = (nll / tokens_per_request).float()  # [n]
        essence_log_probs = logits[essence_rows, essence_last].log_softmax(-1)
        # KL(p_edited || p_original), as the reference implementation computes it
        kl = torch.nn.functional.kl_div(original_log_probs, essence_log_probs, log_target=True, reduction="none").sum(-1)
        decay = search.weight_decay * delta.norm(dim=-1) / original_norm.clamp_min(1e-12) ** 2
        newly_done = (nll.detach() < search.stop_loss) & ~done
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
    return ValueDeltas(delta.detach(), original, steps.tolist(), final_nll.tolist())


def _essence_request(request: EditRequest) -> EditRequest:
    """The "{subject} is a" prompt whose next-token distribution the KL term preserves."""
    return EditRequest("{} is a", request.subject, request.target_new)
