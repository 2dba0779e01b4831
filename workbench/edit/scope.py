"""SERAC's scope classifier: is this input about that edit? (Mitchell et al. 2022, section 3.)

SERAC routes an input to its counterfactual model when the input falls in the scope of an edit in
memory. Here the classifier reads the base model itself: an input is represented by the residual
stream entering block ``layer`` (the middle of the model by default), at the input's last token and
averaged over its tokens (BOS left out), ``[h_last, h_mean]``; an edit by the same features of its
prompt. Both go through one small network (a shared projection to ``width`` dimensions), and the
score of a pair is ``scale * cosine + bias``, a logit of "in scope". This is a bi-encoder: SERAC's
best classifier is a cross-encoder over the pair's text, which is more accurate and costs a
forward pass per (edit, input) pair; the bi-encoder scores every input against thousands of edits
with one matrix product, and the features come from one forward pass of each input.

Training pairs come from CounterFact-format records: an edit's own prompt and its paraphrases,
each also followed by the first tokens of either object (what the metrics feed the model), are in
scope; its neighbourhood prompts (same relation, another subject) and other edits' prompts are not.

Limits: the features are the base model's, so the classifier is only as good as the model's own
representation of which subject an input is about; trained on one model, it serves that model only
(the saved file records the model's dimensions and the feature layer, and is refused on others).
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
from workbench.data import CounterFactRecord
from workbench.edit.subject_match import SubjectMatch, fit_subject_match, token_residuals
from workbench.edit.trained import read_component, save_component
from workbench.errors import InvalidRequestError
from workbench.tokens import target_ids


def prefix_features(model: TransformerBridge, rows: Sequence[Sequence[int]],
                    layer: int) -> list[Float[torch.Tensor, "tokens two_d_model"]]:
    """Per row of token ids: ``[h_last, h_mean]`` of every prefix (one per position), where ``h`` is
    the residual stream entering block ``layer``; blocks from ``layer`` on are not run."""
    special = set(model.tokenizer.all_special_ids)
    features = []
    for start in range(0, len(rows), 1024):  # residuals of a slice at a time: features are twice their size
        part = rows[start:start + 1024]
        features += [residual_features(hidden[layer], row, special) for hidden, row in zip(token_residuals(model, part, [layer]), part)]
    return features


def residual_features(
    hidden: Float[torch.Tensor, "tokens d_model"], tokens: Sequence[int], special: set[int],
) -> Float[torch.Tensor, "tokens two_d_model"]:
    """``[h_last, h_mean]`` of every prefix of one row from its residual stream ``hidden`` (one row
    per token of ``tokens``); the mean leaves out ``special`` tokens (BOS, padding)."""
    h = hidden.float()
    counted = torch.tensor([t not in special for t in tokens], device=h.device, dtype=h.dtype)[:, None]
    running = (h * counted).cumsum(0) / counted.cumsum(0).clamp_min(1)  # [tokens, d_model]
    return torch.cat([h, running], dim=-1)


class ScopeClassifier(nn.Module):
    """``scale * cos(f(input), f(edit)) + bias``, with ``f`` a two-layer network shared by both sides;
    with a :class:`SubjectMatch` (``subject_layer`` given), the check that an input names the edit's subject."""

    def __init__(self, n_features: int, layer: int, width: int = 128, subject_layer: int | None = None,
                 subject_threshold: float = 0.0) -> None:
        super().__init__()
        self.layer, self.width = layer, width
        self.subject = (SubjectMatch(n_features // 2, subject_layer, subject_threshold)
                        if subject_layer is not None else None)
        self.register_buffer("mean", torch.zeros(n_features))
        self.register_buffer("std", torch.ones(n_features))
        self.encode = nn.Sequential(nn.Linear(n_features, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.scale = nn.Parameter(torch.tensor(10.0))
        self.bias = nn.Parameter(torch.tensor(-5.0))
        self.info: dict = {}
        """How it was trained (records, steps, final loss), saved with it."""

    def embed(self, features: Float[torch.Tensor, "n features"]) -> Float[torch.Tensor, "n width"]:
        return nn.functional.normalize(self.encode((features - self.mean) / self.std), dim=-1)

    def logits(self, inputs: Float[torch.Tensor, "n width"], edits: Float[torch.Tensor, "m width"]) -> Float[torch.Tensor, "n m"]:
        """In-scope logits of every (input, edit) pair, from embeddings made by :meth:`embed`."""
        return self.scale * inputs @ edits.T + self.bias

    def save(self, path: str | Path, *, model_name: str) -> Path:
        """``path/scope.safetensors`` and ``path/scope.json`` (dimensions, layer, the model, training)."""
        meta = {**self.info, "n_features": self.mean.numel(), "layer": self.layer, "width": self.width,
                "model": model_name, "subject_layer": self.subject.layer if self.subject else None,
                "subject_threshold": self.subject.threshold if self.subject else None}
        return save_component(self, path, "scope", meta)

    @classmethod
    def load(cls, path: str | Path, model: TransformerBridge) -> ScopeClassifier:
        """A classifier saved by :meth:`save`, checked against ``model``'s width and depth."""
        meta, state = read_component(path, "scope", "scope classifier")
        if meta["n_features"] != 2 * model.cfg.d_model or meta["layer"] >= model.cfg.n_layers:
            raise InvalidRequestError(f"the scope classifier under {path} was trained for {meta['model']!r} "
                                      f"({meta['n_features']} features, layer {meta['layer']}); it does not fit this model")
        classifier = cls(meta["n_features"], meta["layer"], meta["width"], meta.get("subject_layer"),
                         meta.get("subject_threshold") or 0.0)
        classifier.load_state_dict(state)
        classifier.info = meta
        return classifier.eval()


@dataclass(frozen=True)
class ScopeExamples:
    """Training pairs: features of edits and of inputs, and which input belongs to which edit."""

    edits: Float[torch.Tensor, "m features"]
    inputs: Float[torch.Tensor, "n features"]
    owner: torch.Tensor
    """[n]: the edit each input was made for."""
    in_scope: torch.Tensor
    """[n] bool: whether the input is in its owner's scope (own prompt or paraphrase) or a neighbour."""


def scope_examples(model: TransformerBridge, records: Sequence[CounterFactRecord], layer: int,
                   progress: bool = True) -> ScopeExamples:
    """Features of every record's prompt (the edit) and of its in-scope and neighbouring inputs,
    each input at the end of its prompt and after each leading part of either object."""
    rows, meta = [], []  # meta: (owner, in scope, first position read)
    tokenizer = model.tokenizer
    for owner, record in enumerate(tqdm(records, desc="scope examples", disable=not progress, unit="record")):
        request = record.requested_rewrite
        objects = [target_ids(model, request.target_new)] + (
            [target_ids(model, request.target_true)] if request.target_true else [])
        groups = [(True, [request.filled_prompt(), *record.paraphrase_prompts]),
                  (False, list(record.neighborhood_prompts))]
        for in_scope, prompts in groups:
            for prompt in prompts:
                prompt_ids = tokenizer(prompt)["input_ids"]
                for answer in objects:
                    rows.append(prompt_ids + answer[:-1])
                    meta.append((owner, in_scope, len(prompt_ids) - 1))
    edit_rows = [tokenizer(r.requested_rewrite.filled_prompt())["input_ids"] for r in records]
    edit_features = torch.stack([f[-1] for f in prefix_features(model, edit_rows, layer)])
    inputs, owners, labels = [], [], []
    for features, (owner, in_scope, first) in zip(prefix_features(model, rows, layer), meta):
        inputs.append(features[first:])
        owners += [owner] * (len(features) - first)
        labels += [in_scope] * (len(features) - first)
    return ScopeExamples(edit_features, torch.cat(inputs), torch.tensor(owners), torch.tensor(labels))


def train_scope_classifier(
    model: TransformerBridge, records: Sequence[CounterFactRecord], *, layer: int | None = None,
    steps: int = 600, batch_edits: int = 32, random_negatives: int = 4, lr: float = 3e-3, seed: int = 0,
    progress: bool = True,
) -> ScopeClassifier:
    """Fit a :class:`ScopeClassifier` on ``records`` (binary cross-entropy over pairs).

    Each step draws ``batch_edits`` edits; every input made for them is paired with its own edit
    (in scope or a neighbour) and with ``random_negatives`` other edits of the batch (out of scope).
    """
    if len(records) < 2:
        raise InvalidRequestError("training a scope classifier needs at least two records")
    layer = model.cfg.n_layers // 2 if layer is None else families.check_layer(model, layer)
    examples = scope_examples(model, records, layer, progress=progress)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    classifier = ScopeClassifier(examples.inputs.shape[-1], layer)
    everything = torch.cat([examples.inputs, examples.edits])
    classifier.mean.copy_(everything.mean(0))
    classifier.std.copy_(everything.std(0).clamp_min(1e-6))
    optimiser = torch.optim.Adam(classifier.parameters(), lr=lr)
    by_edit = [torch.nonzero(examples.owner == e)[:, 0] for e in range(len(examples.edits))]
    losses = []
    for _ in tqdm(range(steps), desc="scope classifier", disable=not progress, unit="step"):
        batch = rng.sample(range(len(examples.edits)), min(batch_edits, len(examples.edits)))
        rows = torch.cat([by_edit[e] for e in batch])
        column = {e: i for i, e in enumerate(batch)}
        logits = classifier.logits(classifier.embed(examples.inputs[rows]), classifier.embed(examples.edits[batch]))
        own = torch.tensor([column[int(o)] for o in examples.owner[rows]])
        wanted = torch.zeros_like(logits)
        wanted[torch.arange(len(rows)), own] = examples.in_scope[rows].float()
        weight = torch.zeros_like(logits)
        weight[torch.arange(len(rows)), own] = 1.0
        others = torch.randint(len(batch), (len(rows), random_negatives))
        weight[torch.arange(len(rows))[:, None], others] += (others != own[:, None]).float()
        loss = (nn.functional.binary_cross_entropy_with_logits(logits, wanted, reduction="none") * weight).sum() / weight.sum()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    subject = fit_subject_match(model, records, progress=progress)
    classifier.subject = subject
    classifier.info = {"records": len(records), "steps": steps, "final_loss": sum(losses[-20:]) / min(20, len(losses)),
                       "subject_match": subject.info}
    return classifier.eval()
