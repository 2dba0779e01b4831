"""CounterFact-style cases built from facts and a model's recall (the construction every bundled
benchmark, calibration's benchmark and the city requests share).

Each case rewrites one fact the model recalls under every template:

* rewrite prompt: the relation's first template; ``target_true`` is the fact's object and
  ``target_new`` another object of the same relation, whose first token differs from the true one;
* paraphrase prompts: the relation's other templates, with the same subject;
* neighbourhood prompts: other recalled subjects with the same relation *and the same true
  object* (as in CounterFact), under randomly chosen templates; they must keep their answer;
* generation prompts: every template with the subject, for fluency checks.

Facts of one-to-one relations (capitals, element symbols) have no neighbours with the same
object and so cannot be cases; they remain in the model as unrelated facts.
The construction is deterministic for a seed.
"""
from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

from workbench.data import CounterFactRecord, EditRequest, Fact
from workbench.zoo.relations import RELATIONS, Relation

MAX_NEIGHBOURS = 10


def build_benchmark(
    facts: Sequence[Fact],
    recalled: Collection[tuple[str, str]],
    first_token: dict[str, int],
    *,
    seed: int = 0,
    relations: Mapping[str, Relation] = RELATIONS,
) -> list[CounterFactRecord]:
    """Build CounterFact records for every recalled fact that has >= 2 recalled neighbours.

    Args:
        facts: the knowledge base.
        recalled: (subject, relation_id) pairs the model recalls under every template.
        first_token: the first token id of each object (as continuation after a space), used to
            pick new targets that differ from the true object in their first token.
        seed: seeds the choice of new targets and neighbour templates and the case order.
        relations: the relations' templates (a model's record may replace some).
    """
    known = [f for f in facts if (f.subject, f.relation_id) in recalled]
    by_object: dict[tuple[str, str], list[Fact]] = defaultdict(list)
    objects: dict[str, list[str]] = defaultdict(list)
    for fact in known:
        by_object[(fact.relation_id, fact.object)].append(fact)
    for fact in facts:
        if fact.object not in objects[fact.relation_id]:
            objects[fact.relation_id].append(fact.object)
    rng = random.Random(seed)
    cases = []
    for fact in sorted(known, key=lambda f: (f.relation_id, f.subject)):
        relation = relations[fact.relation_id]
        neighbours = [f for f in by_object[(fact.relation_id, fact.object)] if f.subject != fact.subject]
        alternatives = [o for o in objects[fact.relation_id] if first_token[o] != first_token[fact.object]]
        if len(neighbours) < 2 or not alternatives:
            continue
        chosen = rng.sample(neighbours, min(MAX_NEIGHBOURS, len(neighbours)))
        request = EditRequest(
            prompt=relation.templates[0],
            subject=fact.subject,
            target_new=rng.choice(alternatives),
            target_true=fact.object,
            relation_id=fact.relation_id,
        )
        cases.append(
            CounterFactRecord(
                case_id=0,
                requested_rewrite=request,
                paraphrase_prompts=tuple(relation.prompt(fact.subject, i) for i in range(1, len(relation.templates))),
                neighborhood_prompts=tuple(rng.choice(relation.templates).format(n.subject) for n in chosen),
                generation_prompts=tuple(relation.prompt(fact.subject, i) for i in range(len(relation.templates))),
            )
        )
    rng.shuffle(cases)
    return [_with_case_id(record, i) for i, record in enumerate(cases)]


def first_tokens(tokenizer, facts: Sequence[Fact]) -> dict[str, int]:
    """The first token id of every object, as a continuation after a space."""
    return {f.object: tokenizer(" " + f.object, add_special_tokens=False)["input_ids"][0] for f in facts}


def _with_case_id(record: CounterFactRecord, case_id: int) -> CounterFactRecord:
    return replace(record, case_id=case_id, requested_rewrite=replace(record.requested_rewrite, case_id=case_id))
