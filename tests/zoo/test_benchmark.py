"""The bundled CounterFact-style benchmark: its shape, and what the unedited model scores on it."""
from __future__ import annotations

from collections import Counter

import pytest

import workbench
from workbench.evaluate.metrics import counterfact_scores
from workbench.zoo.benchmark import benchmark
from workbench.zoo.knowledge import load_facts
from workbench.zoo.relations import RELATIONS


@pytest.fixture(scope="module")
def records():
    return benchmark("factgpt")


def test_at_least_2000_cases_with_paraphrases_and_neighbours(records):
    assert len(records) >= 2000
    assert [r.case_id for r in records] == list(range(len(records)))
    for record in records:
        assert len(record.paraphrase_prompts) >= 2 and len(record.neighborhood_prompts) >= 2
        request = record.requested_rewrite
        assert request.target_new != request.target_true
        own = {request.filled_prompt(), *record.paraphrase_prompts}
        assert not own & set(record.neighborhood_prompts)


def test_cases_are_true_facts_with_same_relation_targets(records):
    facts = {(f.subject, f.relation_id): f.object for f in load_facts()}
    objects = {}
    for fact in load_facts():
        objects.setdefault(fact.relation_id, set()).add(fact.object)
    for record in records:
        request = record.requested_rewrite
        assert facts[(request.subject, request.relation_id)] == request.target_true
        assert request.target_new in objects[request.relation_id]
        assert request.prompt == RELATIONS[request.relation_id].templates[0]
    assert len(Counter(r.requested_rewrite.relation_id for r in records)) >= 4


def test_unedited_model_keeps_neighbours_and_rejects_new_targets(records):
    scores = counterfact_scores(workbench.load_model(), records[:200])
    assert scores["neighborhood_score"] >= 90
    assert scores["efficacy_score"] <= 10
    assert scores["paraphrase_score"] <= 10


@pytest.mark.slow
def test_shipped_benchmark_is_what_the_builder_makes(records):
    """Rebuild from the model's measured recall: same records (the builder is deterministic)."""
    from workbench.zoo.cases import build_benchmark, first_tokens
    from workbench.zoo.recall import measure_recall
    from workbench.zoo.train import with_default_templates

    model = workbench.load_model()
    facts = load_facts()
    recall = measure_recall(model.original_model, model.tokenizer, with_default_templates(facts))
    assert build_benchmark(facts, recall.recalled, first_tokens(model.tokenizer, facts)) == records
