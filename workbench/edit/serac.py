"""SERAC (Mitchell et al. 2022, "Memory-Based Model Editing at Scale"): edits in a memory, the base model untouched.

An edit is stored, not written. For every input the model is asked about, a scope classifier
(:mod:`workbench.edit.scope`) scores it against every edit in memory; if the best edit's
probability is at least ``threshold``, the answer comes from the *counterfactual model* conditioned
on that edit, otherwise from the base model. The counterfactual model here is the base model itself,
prompted with the edit written out as a sentence before the input ("{prompt} {target}." and a
newline, ``context_repeats`` times); the paper fine-tunes a separate small model for this role. Answers change only in the
final logits (:mod:`workbench.edit.intercept`), so the CounterFact metrics and generation read
SERAC through the same calls as any other editor, and every base weight stays bit-identical.

Limits: how well an in-scope input follows the edit depends on the base model's in-context
copying (a 135M-parameter model copies imperfectly, and paraphrases far from the edit's sentence
copy worse); each forward pass of an edited model also runs, per in-scope input, the input after its
edit's cached sentence (the counterfactual; the classifier's features are read from the pass itself,
except in a pass fed a KV cache, which needs one more pass up to the classifier's layer), and the
cached sentences hold memory (see ``cache_contexts``); the classifier is
trained per model (for the bundled models, on first use, from their tuning cases and city
requests whose subjects are not in the evaluation split).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import EditRequest
from workbench.edit.intercept import LogitRows, install_rule, remove_rule, suspended
from workbench.edit.cut_rows import keep_prefixes
from workbench.edit.scope import ScopeClassifier, prefix_features, residual_features, train_scope_classifier
from workbench.edit.session import EditResult
from workbench.edit.trained import bundled_component
from workbench.errors import InvalidRequestError

SCOPE_VERSION = "scope-v2"
"""Folder name of the cached classifiers of bundled models; change it when training changes."""


@dataclass(frozen=True)
class SeracHyperParams:
    """Attributes:
        threshold: the least in-scope probability that routes an input to the counterfactual model, in (0, 1).
        context_repeats: see below.
        classifier: a folder written by :meth:`ScopeClassifier.save`; ``None`` takes the bundled
            model's classifier (trained and cached on first use).
    """

    threshold: float = 0.5
    classifier: str | None = None
    context_repeats: int = 8
    """How many times the edit's sentence is written before the input. A small model copies from
    its context more reliably when the fact is repeated: on 40 smollm2-135m tuning cases, every
    input routed to its edit, 1/2/3/4 repeats gave ES 65/87.5/92.5/95 and PS 39/70/85/86; on all 147
    tuning cases 4/6/8 gave ES 89.1/95.2/98.0 and PS 86.1/86.7/87.1 (``counterfactual_success`` of
    ``benchmarks/serac_paraphrases.py``). Memory and evaluation time grow with it."""
    cache_contexts: bool = True
    """Keep the attention keys and values of every edit's sentence, computed when the edit is made,
    so a routed input runs only its own tokens. Costs memory (every sentence is padded to the longest:
    on smollm2-135m 4-5 MB per edit in float32 with 4 repeats, 391 MB for 100 city requests, 4.9 GB for 1,000; twice that with 8) and edit time (0.19 s per edit instead of 0.02 s), and
    saves evaluation time: 100 edits in memory, 20 cases scored, 1.7x the unedited model's time
    against 5.0x without the cache (``benchmarks/serac_eval_speed.py``). ``False`` keeps only the
    sentences' tokens and runs each routed input's sentence again."""

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise InvalidRequestError(f"SERAC threshold must be in (0, 1), got {self.threshold}")
        if self.context_repeats < 1:
            raise InvalidRequestError(f"SERAC context_repeats must be at least 1, got {self.context_repeats}")


def bundled_scope_classifier(model: TransformerBridge) -> ScopeClassifier:
    """The scope classifier of a bundled model: loaded from the cache, or trained there on first use
    (:mod:`workbench.edit.trained`: records whose subjects are not in the evaluation split)."""
    return bundled_component(
        model, "serac", SCOPE_VERSION, what="SERAC's scope classifier",
        how="workbench.edit.scope.train_scope_classifier(model, records), .save(folder, model_name=...), "
            "then pass classifier=<folder>",
        load=lambda folder: ScopeClassifier.load(folder, model),
        train=lambda records: train_scope_classifier(model, records))  # minutes: always shown


class SeracMemory:
    """The edits, their classifier embeddings and counterfactual prompts, and the rule that answers.

    Each edit's sentence (written ``context_repeats`` times) is run through the base model once, when
    the memory is made, and its attention keys and values are kept (:mod:`workbench.edit.cut_rows`):
    answering a routed input then runs only the input's tokens after that cached context."""

    def __init__(self, model: TransformerBridge, requests: Sequence[EditRequest], classifier: ScopeClassifier,
                 threshold: float, context_repeats: int, cache_contexts: bool) -> None:
        self.model, self.classifier, self.threshold = model, classifier, threshold
        tokenizer = model.tokenizer
        self.bos = tokenizer.bos_token_id
        self.special = set(tokenizer.all_special_ids)
        prompts = [tokenizer(r.filled_prompt())["input_ids"] for r in requests]
        self.contexts = [tokenizer(f"{r.filled_prompt()} {r.target_new.strip()}.\n" * context_repeats)["input_ids"]
                         for r in requests]
        with torch.no_grad(), suspended(model):
            features = torch.stack([f[-1] for f in prefix_features(model, prompts, classifier.layer)])
            self.edit_embeddings = classifier.embed(features)  # [edits, width]
            self.kept_contexts = keep_prefixes(model, self.contexts, max_rows=64) if cache_contexts else None
        self.routing = {"asked": 0, "routed": 0}
        """Logit rows scored by the classifier so far, and how many went to the counterfactual model."""

    def nbytes(self) -> int:
        """Memory held: edit embeddings, context token ids and the contexts' cached keys and values."""
        return (self.edit_embeddings.numel() * self.edit_embeddings.element_size() + sum(map(len, self.contexts)) * 8
                + (self.kept_contexts.nbytes() if self.kept_contexts is not None else 0))

    @torch.no_grad()
    def answer(self, rows: LogitRows) -> dict[int, torch.Tensor]:
        """Counterfactual logits for the rows the classifier puts in an edit's scope (rows whose prefix
        holds a real token: a prediction after BOS alone is left to the base model)."""
        asked = [i for i, prefix in enumerate(rows.prefixes) if any(t not in self.special for t in prefix)]
        if not asked:
            return {}
        with suspended(self.model):
            features = self._input_features(rows, sorted({rows.input_of[i] for i in asked}))
            row_features = torch.stack([features[rows.input_of[i]][len(rows.prefixes[i]) - 1] for i in asked])
            probabilities = self.classifier.logits(self.classifier.embed(row_features), self.edit_embeddings).sigmoid()
            best, edit = probabilities.max(dim=1)
            routed = [(i, int(e)) for i, e, p in zip(asked, edit, best) if p >= self.threshold]
            self.routing["asked"] += len(asked)
            self.routing["routed"] += len(routed)
            return self._counterfactual(rows, routed)

    def _input_features(self, rows: LogitRows, inputs: list[int]) -> dict[int, torch.Tensor]:
        """The classifier's features of every prefix of ``inputs``: from the residual the pass recorded
        at the classifier's layer, or (a pass fed a KV cache) from a pass up to that layer."""
        residuals = rows.residuals.get(self.classifier.layer)
        if residuals is not None:
            return {i: residual_features(residuals[i], rows.inputs[i], self.special).cpu() for i in inputs}  # the classifier's device
        return dict(zip(inputs, prefix_features(self.model, [rows.inputs[i] for i in inputs], self.classifier.layer)))

    def _counterfactual(self, rows: LogitRows, routed: list[tuple[int, int]]) -> dict[int, torch.Tensor]:
        """The base model's logits for each routed row with its edit's sentence before the input:
        one sequence per (edit, input), continuing the edit's cached context, read at every routed
        position of that input."""
        sequences: dict[tuple[int, int], list[int]] = {}
        for index, edit in routed:
            sequences.setdefault((edit, rows.input_of[index]), []).append(index)
        if not sequences:
            return {}
        keys = list(sequences)
        continuations, starts = [], []  # per sequence: the input's tokens after the context; where the input starts
        for edit, source in keys:
            tokens = rows.inputs[source][: max(len(rows.prefixes[i]) for i in sequences[(edit, source)])]
            shared_bos = tokens[0] == self.bos and self.contexts[edit][:1] == [self.bos]
            continuations.append(list(tokens[1:] if shared_bos else tokens))  # one BOS, the context's
            starts.append(len(self.contexts[edit]) - int(shared_bos))
        edits = [edit for edit, _ in keys]
        contexts = (self.kept_contexts.select(torch.tensor(edits)) if self.kept_contexts is not None
                    else keep_prefixes(self.model, [self.contexts[edit] for edit in edits]))
        cut = contexts.continued(continuations)
        predict = torch.zeros_like(cut.input_ids, dtype=torch.bool)
        wanted = []  # (row index, sequence, column)
        for sequence, key in enumerate(keys):
            for index in sequences[key]:
                column = cut.index_of(sequence, starts[sequence] + len(rows.prefixes[index]) - 1)
                wanted.append((index, sequence, column))
                predict[sequence, column] = True
        logits = cut.run(self.model, predict)  # [kept, vocab], in row-major order
        order = sorted(range(len(wanted)), key=lambda k: wanted[k][1:])
        return {wanted[k][0]: logits[rank] for rank, k in enumerate(order)}


def apply_serac(result: EditResult, requests: list[EditRequest], layer, hparams: SeracHyperParams,
                progress: bool = False) -> None:
    """Keep ``requests`` in a SERAC memory that answers for ``result.model`` until ``result`` is restored."""
    if layer is not None:
        raise InvalidRequestError("SERAC changes no layer; leave layer out")
    model = result.model
    classifier = (ScopeClassifier.load(Path(hparams.classifier), model) if hparams.classifier is not None
                  else bundled_scope_classifier(model))
    memory = SeracMemory(model, requests, classifier, hparams.threshold, hparams.context_repeats, hparams.cache_contexts)
    install_rule(model, result, memory.answer, residual_layer=classifier.layer)
    result.on_restore(lambda: remove_rule(model, result))
    result.info.update({"memory_settings": asdict(hparams), "classifier_layer": classifier.layer, "routing": memory.routing,
                        "memory_bytes": memory.nbytes()})
