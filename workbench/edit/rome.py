"""ROME: Rank-One Model Editing (Meng et al. 2022, "Locating and Editing Factual Associations
in GPT", section 3).

Treat the MLP output projection W of one layer as a linear associative memory mapping keys k
(MLP activations at the subject's last token) to values v (what it writes into the residual
stream). To make the model say ``target_new`` about a subject:

1. **Key** k*: the mean key at the subject's last token, over the prompt preceded by a few short
   random prefixes (so the key stands for the subject in many contexts).
2. **Value** v* = W k* + delta, with delta found by gradient descent on the negative
   log-likelihood of ``target_new`` (teacher forced, over the prefixed prompts), plus a KL term
   that keeps the model's distribution on "{subject} is a" close to the original (essence
   drift), plus a weight decay on delta, with ||delta|| clamped to a multiple of ||v||.
3. **Update** the closed-form minimal change that maps k* to v* while disturbing other keys
   least under their second moment C = E[k k^T]:
   W <- W + (v* - W k*) (C^-1 k*)^T / ((C^-1 k*)^T k*).

The update is computed in float64 and written through an :class:`~workbench.edit.session.EditResult`.

Limits: one fact per update (several requests are applied one after another, which degrades
after many edits; use MEMIT for batches); quality depends on how well C is estimated; the
reference's prefixes are 5- and 10-token samples from the model, as here.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import EditRequest
from workbench.edit.session import EditResult
from workbench.edit.stats import second_moment
from workbench.tokens import locate_subject, pad_right


@dataclass(frozen=True)
class RomeHyperParams:
    """ROME's settings. Defaults follow the paper's GPT-2 XL values where they transfer.

    Attributes:
        v_steps: gradient steps for delta (the reference uses 20 on GPT-2 XL).
        v_lr: Adam learning rate for delta.
        v_weight_decay: weight of ||delta||^2 / ||v||^2 in the loss.
        clamp_norm_factor: ||delta|| is kept below this multiple of ||v||.
        kl_factor: weight of the KL term on the "{subject} is a" prompt.
        prefixes: (length in tokens, count) of random prefixes sampled from the model for k* and v*.
        stop_loss: stop the optimisation once the target's mean NLL falls below this.
        mom2_n_samples: texts of the corpus used for C (all if None).
        seed: seeds the prefixes.
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


def hyperparameters_for(model: TransformerBridge) -> RomeHyperParams:
    """Default ROME settings for the model's family (the same for every family so far)."""
    families.family_of(model)  # refuses unsupported families early
    return RomeHyperParams()


@torch.no_grad()
def sample_prefixes(model: TransformerBridge, spec: tuple[tuple[int, int], ...], seed: int) -> list[str]:
    """Context templates ``"{}"`` plus ``"<prefix>. {}"`` for random prefixes sampled from the model
    (top-5 sampling after BOS), as the reference does to average keys over contexts."""
    generator = torch.Generator().manual_seed(seed)
    bos = model.tokenizer.bos_token_id
    templates = ["{}"]
    for length, count in spec:
        ids = torch.full((count, 1), bos, dtype=torch.long, device=model.cfg.device)
        for _ in range(length):
            logits = model(ids, return_type="logits")[:, -1].float().cpu()
            top = logits.topk(5, dim=-1)
            choice = torch.multinomial(top.values.softmax(-1), 1, generator=generator)
            ids = torch.cat([ids, top.indices.gather(1, choice).to(ids.device)], dim=1)
        for row in ids[:, 1:]:
            text = model.tokenizer.decode(row, skip_special_tokens=True).replace("{", "").replace("}", "")
            templates.append(text.strip() + ". {}")
    return templates


def _subject_positions(model: TransformerBridge, texts: list[str], subject: str, prefix_chars: list[int]):
    """Token ids of each text and the position of the subject's last token (after the prefix)."""
    spans = [locate_subject(model, text, subject, search_from=start) for text, start in zip(texts, prefix_chars)]
    return [span.input_ids[0].tolist() for span in spans], [span.last for span in spans]


def _prefixed(templates: list[str], request: EditRequest) -> tuple[list[str], list[int]]:
    texts = [template.format(request.filled_prompt()) for template in templates]
    return texts, [template.index("{}") for template in templates]


@torch.no_grad()
def mean_key(model: TransformerBridge, layer: int, request: EditRequest, templates: list[str]) -> Float[torch.Tensor, "d_mlp"]:
    """k*: the MLP key at the subject's last token, averaged over the prefixed prompts."""
    texts, starts = _prefixed(templates, request)
    rows, positions = _subject_positions(model, texts, request.subject, starts)
    input_ids = pad_right(rows, model.tokenizer.pad_token_id, model.cfg.device)
    _, cache = model.run_with_cache(input_ids, names_filter=lambda n: n == families.Hooks.mlp_key(layer))
    keys = cache[families.Hooks.mlp_key(layer)]
    return keys[torch.arange(len(rows)), torch.tensor(positions)].double().mean(0)


def optimise_value_delta(
    model: TransformerBridge, layer: int, request: EditRequest, templates: list[str], hparams: RomeHyperParams
) -> tuple[Float[torch.Tensor, "d_model"], dict]:
    """delta such that adding it to layer ``layer``'s MLP output at the subject's last token makes
    ``target_new`` likely in every prefixed prompt (ROME's v* = W k* + delta)."""
    tokenizer, device = model.tokenizer, model.cfg.device
    target = tokenizer(" " + request.target_new.strip(), add_special_tokens=False)["input_ids"]
    texts, starts = _prefixed(templates, request)
    prompt_rows, prompt_positions = _subject_positions(model, texts, request.subject, starts)
    essence_text = f"{request.subject} is a"
    essence_rows, essence_positions = _subject_positions(model, [essence_text], request.subject, [0])
    rows = [row + target[:-1] for row in prompt_rows] + essence_rows
    positions = torch.tensor(prompt_positions + essence_positions, device=device)
    input_ids = pad_right(rows, tokenizer.pad_token_id, device)
    n_prompts = len(prompt_rows)
    # where each target token is predicted: the position before it
    target_at = torch.tensor([[len(r) - 1 + i for i in range(len(target))] for r in prompt_rows], device=device)
    target_ids = torch.tensor(target, device=device).expand(n_prompts, -1)
    essence_last = len(essence_rows[0]) - 1
    hook_name = families.Hooks.mlp_out(layer)

    with torch.no_grad():
        _, cache = model.run_with_cache(input_ids, names_filter=lambda n: n == hook_name)
        original_value = cache[hook_name][0, positions[0]].float()
        original_logits = model(input_ids[n_prompts:], return_type="logits")[0, essence_last].float()
        original_log_probs = original_logits.log_softmax(-1)

    delta = torch.zeros(model.cfg.d_model, device=device, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=hparams.v_lr)
    max_norm = hparams.clamp_norm_factor * original_value.norm()
    row_index = torch.arange(len(rows), device=device)

    def add_delta(activation, hook=None):
        # in place: the bridge passes on the tensor it handed to the hook
        activation[row_index, positions] += delta.to(activation.dtype)
        return activation

    history = []
    for _ in range(hparams.v_steps):
        logits = model.run_with_hooks(input_ids, return_type="logits", fwd_hooks=[(hook_name, add_delta)]).float()
        log_probs = logits[:n_prompts].log_softmax(-1)
        picked = log_probs[torch.arange(n_prompts, device=device)[:, None], target_at, target_ids]
        nll = -picked.mean()
        essence = logits[n_prompts, essence_last].log_softmax(-1)
        kl = torch.nn.functional.kl_div(essence, original_log_probs, log_target=True, reduction="sum")
        decay = hparams.v_weight_decay * delta.norm() ** 2 / original_value.norm() ** 2
        loss = nll + hparams.kl_factor * kl + decay
        history.append({"nll": nll.item(), "kl": kl.item(), "loss": loss.item()})
        if nll.item() < hparams.stop_loss:
            break
        (gradient,) = torch.autograd.grad(loss, [delta])
        delta.grad = gradient
        optimiser.step()
        with torch.no_grad():
            if delta.norm() > max_norm:
                delta.mul_(max_norm / delta.norm())
    return delta.detach(), {"steps": len(history), "final_nll": history[-1]["nll"], "history": history}


def rank_one_update(
    weight: Float[torch.Tensor, "d_out d_in"],
    key: Float[torch.Tensor, "d_in"],
    value_delta: Float[torch.Tensor, "d_out"],
    second_moment: Float[torch.Tensor, "d_in d_in"],
) -> Float[torch.Tensor, "d_out d_in"]:
    """The change of W mapping ``key`` to ``W key + value_delta`` with least disturbance under C.

    Delta W = value_delta (C^-1 k)^T / ((C^-1 k)^T k), computed in float64; it is rank one and
    satisfies (W + Delta W) k = W k + value_delta exactly (up to rounding).
    """
    key = key.double()
    direction = torch.linalg.solve(second_moment.double(), key)  # C^-1 k*
    return torch.outer(value_delta.double(), direction) / direction.dot(key)


def apply_rome(
    result: EditResult, requests: list[EditRequest], layer: int, hparams: RomeHyperParams, progress: bool = False
) -> None:
    """Apply ROME for each request in turn at ``layer``, writing through ``result``."""
    from tqdm.auto import tqdm

    model = result.model
    projection = families.mlp_out_projection(model, layer)
    moment = second_moment(model, layer, n_samples=hparams.mom2_n_samples, progress=progress)
    templates = sample_prefixes(model, hparams.prefixes, hparams.seed)
    details = []
    for request in tqdm(requests, desc="ROME", disable=not progress or len(requests) < 2):
        key = mean_key(model, layer, request, templates)
        delta, info = optimise_value_delta(model, layer, request, templates, hparams)
        update = rank_one_update(projection.matrix().detach(), key, delta, moment)  # [d_out, d_in]
        stored = update.T if projection.layout == "conv1d" else update
        result.apply_delta(projection.name, stored.to(projection.weight.dtype))
        details.append({"subject": request.subject, "v_steps": info["steps"], "final_nll": info["final_nll"],
                        "delta_norm": delta.norm().item()})
    result.info.update({"layer": layer, "hparams": hparams.__dict__, "requests": details, "prefixes": templates})
