"""The shipped fact model: loads fast and offline, and knows its knowledge base.

Recall is measured here with plain ``transformers`` and the tokenizer, not with the
workbench's own recall code, so the two check each other.
"""
from __future__ import annotations

import time
from collections import defaultdict

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import workbench
from workbench.zoo.records import RECORDS
from workbench.zoo.knowledge import load_facts
from workbench.zoo.relations import FACTGPT_RELATION_IDS, RELATIONS

FACTGPT = RECORDS["factgpt"].folder


def test_loads_offline_in_under_five_seconds():
    started = time.perf_counter()
    model = workbench.load_model()
    elapsed = time.perf_counter() - started
    assert elapsed < 5, f"loading took {elapsed:.1f} s"
    assert model.cfg.n_layers >= 6


def test_weights_file_is_small():
    assert (FACTGPT / "model.safetensors").stat().st_size <= 30e6


@pytest.fixture(scope="module")
def first_token_recall():
    model = AutoModelForCausalLM.from_pretrained(FACTGPT).eval()
    tokenizer = AutoTokenizer.from_pretrained(FACTGPT)
    bos = tokenizer.eos_token_id
    rows = [
        (fact.relation_id, [bos, *tokenizer.encode(t.format(fact.subject), add_special_tokens=False)],
         tokenizer.encode(" " + fact.object, add_special_tokens=False)[0])
        for fact in load_facts() for t in RELATIONS[fact.relation_id].templates
    ]
    hits: dict[str, list[bool]] = defaultdict(list)
    for start in range(0, len(rows), 512):
        batch = rows[start : start + 512]
        width = max(len(ids) for _, ids, _ in batch)
        input_ids = torch.tensor([ids + [bos] * (width - len(ids)) for _, ids, _ in batch])
        last = torch.tensor([len(ids) - 1 for _, ids, _ in batch])
        with torch.no_grad():  # the vocabulary projection of the last real positions only
            hidden = model.base_model(input_ids).last_hidden_state[torch.arange(len(batch)), last]
            logits = model.get_output_embeddings()(hidden)
        for (relation, _, answer), guess in zip(batch, logits.argmax(-1).tolist()):
            hits[relation].append(guess == answer)
    return {relation: sum(h) / len(h) for relation, h in hits.items()}, sum(map(sum, hits.values())) / sum(map(len, hits.values()))


def test_recall_over_the_knowledge_base_is_at_least_95_percent(first_token_recall):
    _, overall = first_token_recall
    assert overall >= 0.95


def test_every_relation_is_recalled_at_least_90_percent(first_token_recall):
    by_relation, _ = first_token_recall
    assert set(by_relation) == set(FACTGPT_RELATION_IDS)
    weak = {r: v for r, v in by_relation.items() if v < 0.90}
    assert not weak, weak
