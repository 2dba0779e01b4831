"""How well a model recalls a set of facts: first-token and full-object greedy recall per relation."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from workbench.data import Fact

@dataclass(frozen=True)
class TrainingFact:
    """A fact and the prompt templates (``{}`` for the subject) it is taught and asked with."""

    fact: Fact
    templates: tuple[str, ...]

    def prompts(self) -> list[str]:
        return [template.format(self.fact.subject) for template in self.templates]


@dataclass(frozen=True)
class RelationRecall:
    """Recall over every (fact, template) prompt of one relation."""

    prompts: int
    first_token: float
    """Share of prompts whose top-1 next token is the object's first token."""
    full_object: float
    """Share of prompts whose greedy continuation is the whole object."""


@dataclass(frozen=True)
class RecallReport:
    overall: RelationRecall
    by_relation: dict[str, RelationRecall]
    recalled: frozenset[tuple[str, str]]
    """(subject, relation_id) pairs whose first object token is top-1 under *every* template."""

    def to_dict(self) -> dict:
        as_dict = lambda r: {"prompts": r.prompts, "first_token": r.first_token, "full_object": r.full_object}  # noqa: E731
        return {"overall": as_dict(self.overall), "by_relation": {k: as_dict(v) for k, v in self.by_relation.items()}}


@torch.no_grad()
def measure_recall(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    facts: Sequence[TrainingFact],
    *,
    batch_size: int = 256,
    progress: bool = False,
    prefix: Sequence[int] | None = None,
) -> RecallReport:
    """Teacher-forced recall of every fact under every template.

    Each prompt starts with the token ids ``prefix`` (default: the tokenizer's EOS, as the bundled
    fact model was trained); padding uses the tokenizer's pad token (EOS where it has none).

    Full-object greedy recall is checked in the same pass: greedy decoding produces the object
    exactly when the argmax at every object position is the next object token.
    """
    prefix = [tokenizer.eos_token_id] if prefix is None else list(prefix)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = []  # (relation, subject, ids, answer_start)
    for item in facts:
        answer = tokenizer.encode(" " + item.fact.object, add_special_tokens=False)
        for prompt in item.prompts():
            ids = [*prefix, *tokenizer.encode(prompt, add_special_tokens=False)]
            rows.append((item.fact.relation_id, item.fact.subject, ids + answer, len(ids)))
    rows.sort(key=lambda row: len(row[2]))  # similar lengths share a batch: little padding
    first_hits: dict[str, list[bool]] = defaultdict(list)
    full_hits: dict[str, list[bool]] = defaultdict(list)
    all_templates_hit: dict[tuple[str, str], bool] = {}
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(rows), batch_size), desc="recall", disable=not progress):
        batch = rows[start : start + batch_size]
        length = max(len(ids) for _, _, ids, _ in batch)
        input_ids = torch.full((len(batch), length), pad, dtype=torch.long)
        for row, (_, _, ids, _) in enumerate(batch):
            input_ids[row, : len(ids)] = torch.tensor(ids)
        hidden = model.base_model(input_ids.to(device)).last_hidden_state  # [batch, pos, d_model], final norm applied
        # only the positions that predict an object token are projected onto the vocabulary (a large share
        # of a small model's forward pass otherwise); a final logit soft-cap would not change the argmax
        in_batch, positions = zip(*[(row, p) for row, (_, _, ids, start) in enumerate(batch)
                                    for p in range(start - 1, len(ids) - 1)])
        guessed = model.get_output_embeddings()(hidden[list(in_batch), list(positions)]).argmax(-1).cpu().tolist()
        offset = 0
        for relation, subject, ids, answer_start in batch:
            guesses = guessed[offset : offset + len(ids) - answer_start]
            offset += len(guesses)
            answer = ids[answer_start:]
            first_hits[relation].append(guesses[0] == answer[0])
            full_hits[relation].append(guesses == answer)
            key = (subject, relation)
            all_templates_hit[key] = all_templates_hit.get(key, True) and guesses[0] == answer[0]

    def summary(first: list[bool], full: list[bool]) -> RelationRecall:
        return RelationRecall(len(first), sum(first) / len(first), sum(full) / len(full))

    by_relation = {r: summary(first_hits[r], full_hits[r]) for r in sorted(first_hits)}
    overall = summary([h for r in first_hits for h in first_hits[r]], [h for r in full_hits for h in full_hits[r]])
    recalled = frozenset(key for key, hit in all_templates_hit.items() if hit)
    return RecallReport(overall, by_relation, recalled)
