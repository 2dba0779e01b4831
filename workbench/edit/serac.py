"""SERAC (Mitchell et al. 2022, "Memory-Based Model Editing at Scale"): edits in a memory, the base model untouched.

An edit is stored, not written. For every input the model is asked about, a scope classifier
(:mod:`workbench.edit.scope`) scores it against every edit in memory; if the best edit's
probability is at least ``threshold`` and the input names that edit's subject
(:mod:`workbench.edit.subject_match`), the answer comes from the *counterfactual model* conditioned
on that edit, otherwise from the base model. The counterfactual model here is the base model itself,
prompted with the edit written out as a sentence before the input ("{prompt} {target}." and a
newline, ``context_repeats`` times), read by context-aware decoding (``context_weight``); the paper
fine-tunes a separate small model for this role. Answers change only in the
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
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import EditRequest
from workbench.edit.intercept import LogitRows, install_rule, remove_rule, suspended
from workbench.edit.cut_rows import keep_prefixes
from workbench.edit.scope import ScopeClassifier, prefix_features, residual_features, train_scope_classifier
from workbench.edit.subject_match import token_residuals
from workbench.edit.session import EditResult
from workbench.edit.trained import bundled_component
from workbench.errors import InvalidRequestError

SCOPE_VERSION = "scope-v3"
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

    context_weight: float = 1.0
    """Context-aware decoding (Shi et al. 2023, "Trusting Your Evidence", arXiv 2305.14739): a routed
    row's log-probabilities are ``(1 + w) log p(y | sentence, input) - w log p(y | input)``,
    renormalised, so the edit's sentence outweighs what the base model knew (0: the counterfactual
    as it is). On 150 smollm2-135m tuning cases, every input routed to its own edit, w = 0 / 0.25 /
    0.5 / 1 gave rewrite 98.0 / 99.3 / 100 / 100 and paraphrase 87.1 / 94.9 / 98.0 / 99.0 (the
    paper's value for knowledge conflicts is 1). The base logits are those of the pass being answered,
    so this costs nothing."""
    subject_match: bool = True
    """Route an input to an edit only if it also names the edit's subject (the classifier's
    :class:`~workbench.edit.subject_match.SubjectMatch`, where it has one); ``False``: the bi-encoder alone."""

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise InvalidRequestError(f"SERAC threshold must be in (0, 1), got {self.threshold}")
        if self.context_repeats < 1:
            raise InvalidRequestError(f"SERAC context_repeats must be at least 1, got {self.context_repeats}")
        if self.context_weight < 0:
            raise InvalidRequestError(f"SERAC context_weight must be at least 0, got {self.context_weight}")


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
                 hparams: SeracHyperParams) -> None:
        self.model, self.classifier, self.threshold = model, classifier, hparams.threshold
        self.context_weight = hparams.context_weight
        self.subject = classifier.subject if hparams.subject_match else None
        tokenizer = model.tokenizer
        self.bos = tokenizer.bos_token_id
        self.special = set(tokenizer.all_special_ids)
        prompts = [tokenizer(r.filled_prompt())["input_ids"] for r in requests]
        self.contexts = [tokenizer(f"{r.filled_prompt()} {r.target_new.strip()}.\n" * hparams.context_repeats)["input_ids"]
                         for r in requests]
        self.layers = sorted({classifier.layer} | ({self.subject.layer} if self.subject else set()))
        """The blocks whose input the rule reads."""
        with torch.no_grad(), suspended(model):
            features = torch.stack([f[-1] for f in prefix_features(model, prompts, classifier.layer)])
            self.edit_embeddings = classifier.embed(features)  # [edits, width]
            self.subject_keys = (self.subject.edit_keys(model, [r.filled_prompt() for r in requests],
                                                        [r.subject for r in requests]) if self.subject else None)
            self.kept_contexts = keep_prefixes(model, self.contexts, max_rows=64) if hparams.cache_contexts else None
        self.routing = {"asked": 0, "routed": 0, "subject_not_named": 0}
        """Logit rows scored by the classifier so far, how many went to the counterfactual model, and how
        many the classifier put in an edit's scope but the subject match sent back to the base model."""

    def nbytes(self) -> int:
        """Memory held: edit embeddings and subject keys, context token ids and the contexts' cached keys and values."""
        tensors = [self.edit_embeddings] + ([self.subject_keys] if self.subject_keys is not None else [])
        return (sum(t.numel() * t.element_size() for t in tensors) + sum(map(len, self.contexts)) * 8
                + (self.kept_contexts.nbytes() if self.kept_contexts is not None else 0))

    @torch.no_grad()
    def answer(self, rows: LogitRows) -> dict[int, torch.Tensor]:
        """Counterfactual logits for the rows the classifier puts in an edit's scope and that name the
        edit's subject (rows whose prefix holds a real token: a prediction after BOS alone is left to
        the base model)."""
        asked = [i for i, prefix in enumerate(rows.prefixes) if any(t not in self.special for t in prefix)]
        if not asked:
            return {}
        with suspended(self.model):
            residuals = self._input_residuals(rows, sorted({rows.input_of[i] for i in asked}))
            features = {source: residual_features(hidden[self.classifier.layer], rows.inputs[source], self.special)
                        for source, hidden in residuals.items()}
            row_features = torch.stack([features[rows.input_of[i]][len(rows.prefixes[i]) - 1] for i in asked])
            probabilities = self.classifier.logits(self.classifier.embed(row_features), self.edit_embeddings).sigmoid()
            best, edit = probabilities.max(dim=1)
            in_scope = [(i, int(e)) for i, e, p in zip(asked, edit, best) if p >= self.threshold]
            routed = [(i, e) for i, e in in_scope if self._names_subject(rows, residuals, i, e)]
            self.routing["asked"] += len(asked)
            self.routing["routed"] += len(routed)
            self.routing["subject_not_named"] += len(in_scope) - len(routed)
            return self._counterfactual(rows, routed)

    def _input_residuals(self, rows: LogitRows, inputs: list[int]) -> dict[int, dict[int, torch.Tensor]]:
        """Per input of ``inputs``, per block the rule reads: the residual entering it at every token, as
        the pass recorded it or (a pass fed a KV cache) from a pass up to those blocks. On the CPU, with
        the classifier."""
        if all(layer in rows.residuals for layer in self.layers):
            return {i: {layer: rows.residuals[layer][i].float().cpu() for layer in self.layers} for i in inputs}
        return dict(zip(inputs, token_residuals(self.model, [rows.inputs[i] for i in inputs], self.layers)))

    def _names_subject(self, rows: LogitRows, residuals: dict[int, dict[int, torch.Tensor]], row: int, edit: int) -> bool:
        """Whether the prefix of ``row`` names the subject of ``edit`` (always, without a subject match)."""
        if self.subject is None:
            return True
        source = rows.input_of[row]
        match = self.subject.running_match(residuals[source][self.subject.layer], rows.inputs[source], self.special,
                                           self.subject_keys[edit: edit + 1])
        return bool(match[len(rows.prefixes[row]) - 1, 0] >= self.subject.threshold)

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
        return {wanted[k][0]: self._trusting_context(logits[rank], rows.logits[wanted[k][0]])
                for rank, k in enumerate(order)}

    def _trusting_context(self, counterfactual: Float[torch.Tensor, "vocab"],
                          base: Float[torch.Tensor, "vocab"]) -> Float[torch.Tensor, "vocab"]:
        """Context-aware decoding of a routed row (see ``SeracHyperParams.context_weight``)."""
        if self.context_weight == 0:
            return counterfactual
        w = self.context_weight
        return ((1 + w) * counterfactual.float().log_softmax(-1) - w * base.float().log_softmax(-1)).log_softmax(-1)


def apply_serac(result: EditResult, requests: list[EditRequest], layer, hparams: SeracHyperParams,
                progress: bool = False) -> None:
    """Keep ``requests`` in a SERAC memory that answers for ``result.model`` until ``result`` is restored."""
    if layer is not None:
        raise InvalidRequestError("SERAC changes no layer; leave layer out")
    model = result.model
    classifier = (ScopeClassifier.load(Path(hparams.classifier), model) if hparams.classifier is not None
                  else bundled_scope_classifier(model))
    memory = SeracMemory(model, requests, classifier, hparams)
    install_rule(model, result, memory.answer, residual_layers=memory.layers)
    result.on_restore(lambda: remove_rule(model, result))
    result.info.update({"memory_settings": asdict(hparams), "classifier_layer": classifier.layer,
                        "subject_layer": memory.subject.layer if memory.subject else None, "routing": memory.routing,
                        "memory_bytes": memory.nbytes()})
