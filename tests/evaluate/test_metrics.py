"""CounterFact metrics against probabilities computed independently with plain transformers."""
from __future__ import annotations

import math

import pytest
import torch
from transformers import AutoModelForCausalLM

import workbench
from workbench.data import CounterFactRecord, EditRequest
from workbench.evaluate.fluency import generate, ngram_entropy
from workbench.evaluate import metrics
from workbench.evaluate.metrics import case_metrics, remembering_unedited_metrics, summarize, without_edited_neighbours
from workbench.probabilities import score_targets


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["gpt2"])


@pytest.fixture(scope="module")
def reference(tiny_model_dirs):
    return AutoModelForCausalLM.from_pretrained(tiny_model_dirs["gpt2"]).eval()


def _product_probability(reference, tokenizer, prompt: str, target: str) -> float:
    prompt_ids = tokenizer(prompt)["input_ids"]
    target_ids = tokenizer(" " + target, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = reference(torch.tensor([prompt_ids + target_ids])).logits[0]
    probability = 1.0
    for i, token in enumerate(target_ids):
        probability *= logits[len(prompt_ids) - 1 + i].softmax(-1)[token].item()
    return probability


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma3"])
def test_multi_token_probability_is_the_teacher_forced_product(tiny_model_dirs, family):
    model = workbench.load_model(tiny_model_dirs[family])
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dirs[family]).eval()
    prompts = ["The capital of France is", "Rome is the capital of", "Oxygen has the symbol"]
    targets = ["Paris Berlin", "Italy", "O"]
    scores = score_targets(model, prompts, targets)
    for prompt, target, log_prob in zip(prompts, targets, scores.log_prob.tolist()):
        expected = _product_probability(reference, model.tokenizer, prompt, target)
        assert math.exp(log_prob) == pytest.approx(expected, rel=1e-4)


def test_pairs_sharing_an_input_row_are_scored_like_pairs_alone(model, reference):
    # a multi-token target whose input ("... is Paris") is also the whole prompt of another pair,
    # read from a later position of the shared row (the tiny tokenizer splits most words)
    prompts = ["The capital of France is", "The capital of France is", "The capital of France is",
               "The capital of France is Paris", "Rome is the capital of"]
    targets = ["Paris", "Rome", "Paris Berlin", "Berlin", "Italy"]
    scores = score_targets(model, prompts, targets, batch_size=2)
    for prompt, target, log_prob in zip(prompts, targets, scores.log_prob.tolist()):
        expected = _product_probability(reference, model.tokenizer, prompt, target)
        assert math.exp(log_prob) == pytest.approx(expected, rel=1e-4)
    alone = [score_targets(model, [prompt], [target]) for prompt, target in zip(prompts, targets)]
    assert scores.tokens_correct.tolist() == [bool(one.tokens_correct[0]) for one in alone]
    assert scores.token_accuracy.tolist() == [float(one.token_accuracy[0]) for one in alone]


def test_single_token_objects_of_one_prompt_share_one_row(monkeypatch):
    factgpt = workbench.load_model("factgpt")
    prompt = "The capital of Burkina Faso is"
    objects = ["Ouagadougou", "Paris", "Rome"]
    assert all(len(factgpt.tokenizer(" " + o, add_special_tokens=False)["input_ids"]) == 1 for o in objects)
    alone = [float(score_targets(factgpt, [prompt], [o]).log_prob[0]) for o in objects]
    rows = []
    forward = factgpt.forward
    monkeypatch.setattr(factgpt, "forward", lambda input_ids, *a, **k: rows.append(len(input_ids)) or forward(input_ids, *a, **k))
    together = score_targets(factgpt, [prompt] * 3 + ["The capital of Libya is"], [*objects, "Liberian Dollar"])
    assert rows == [2]  # one row for the three single-token objects, one for the other prompt
    assert together.log_prob[:3].tolist() == pytest.approx(alone, abs=1e-5)


def test_case_metrics_follow_their_definitions(model, reference):
    record = CounterFactRecord(
        case_id=7,
        requested_rewrite=EditRequest("The capital of {} is", "France", "Rome", "Paris"),
        paraphrase_prompts=("France has its capital in", "The capital city of France is"),
        neighborhood_prompts=("The capital of Spain is",),
        generation_prompts=(),
    )
    (case,) = case_metrics(model, [record])
    p = lambda prompt, target: _product_probability(reference, model.tokenizer, prompt, target)  # noqa: E731
    efficacy = p("The capital of France is", "Rome") - p("The capital of France is", "Paris")
    assert case["efficacy_magnitude"] == pytest.approx(efficacy, rel=1e-3, abs=1e-9)
    assert case["efficacy_score"] == (100.0 if efficacy > 0 else 0.0)
    paraphrase = [p(q, "Rome") > p(q, "Paris") for q in record.paraphrase_prompts]
    assert case["paraphrase_score"] == pytest.approx(100.0 * sum(paraphrase) / 2)
    neighbour = p("The capital of Spain is", "Paris") - p("The capital of Spain is", "Rome")
    assert case["neighborhood_magnitude"] == pytest.approx(neighbour, rel=1e-3, abs=1e-9)
    assert case["case_id"] == 7
    summary = summarize([case, case])
    assert summary["efficacy_score"] == case["efficacy_score"]


def test_score_is_the_harmonic_mean():
    cases = [{"case_id": 0, "efficacy_score": 100.0, "paraphrase_score": 50.0, "neighborhood_score": 25.0}]
    assert summarize(cases)["score"] == pytest.approx(3 / (1 / 100 + 1 / 50 + 1 / 25))


def test_ngram_entropy_closed_form():
    # four distinct bigrams and three distinct trigrams, each once: H2 = 2 bits, H3 = log2(3)
    assert ngram_entropy("a b c d e") == pytest.approx((2 / 3 * 2 + 4 / 3 * math.log2(3)) / 2)
    assert ngram_entropy("a a a a a") == 0.0


def test_generation_is_reproducible(model):
    prompts = ["The capital of France is", "Rome"]
    assert generate(model, prompts, max_new_tokens=4, seed=1) == generate(model, prompts, max_new_tokens=4, seed=1)


def test_neighbours_that_are_edited_subjects_are_left_out():
    lyon = CounterFactRecord(
        case_id=0, requested_rewrite=EditRequest("{} is a city in", "Lyon", "Spain", "France"),
        paraphrase_prompts=("The city of Lyon lies in",),
        neighborhood_prompts=("Paris is a city in", "The city of Nice lies in", "Nice is a city in", "Lille is in"),
    )
    (kept,), dropped = without_edited_neighbours([lyon], ["Lyon", "Nice", "Lille"])
    # both templates of the case recognise Nice; "Lille is in" uses another template and stays;
    # the case's own subject is never a neighbour of itself
    assert kept.neighborhood_prompts == ("Paris is a city in", "Lille is in") and dropped == 2
    assert kept.requested_rewrite == lyon.requested_rewrite and kept.paraphrase_prompts == lyon.paraphrase_prompts
    (untouched,), none = without_edited_neighbours([lyon], ["Lyon"])
    assert untouched == lyon and none == 0


def test_a_case_without_neighbours_left_has_no_neighbourhood_score(model):
    case = CounterFactRecord(case_id=0, requested_rewrite=EditRequest("The capital of {} is", "France", "Rome", "Paris"),
                             paraphrase_prompts=("France's capital is",), neighborhood_prompts=())
    other = CounterFactRecord(case_id=1, requested_rewrite=EditRequest("The capital of {} is", "Italy", "Paris", "Rome"),
                              paraphrase_prompts=(), neighborhood_prompts=("The capital of Italy is",))
    first, second = case_metrics(model, [case, other])
    assert "neighborhood_score" not in first and "neighborhood_score" in second
    assert summarize([first, second])["neighborhood_score"] == second["neighborhood_score"]


def test_unedited_metrics_are_measured_once_per_case_and_edited_ones_every_time(model, monkeypatch, editing_corpus):
    records = [CounterFactRecord(case_id=i, requested_rewrite=EditRequest("The capital of {} is", subject, new, true),
                                 paraphrase_prompts=(f"{subject} has its capital in",),
                                 neighborhood_prompts=("The capital of Spain is",), generation_prompts=())
               for i, (subject, new, true) in enumerate([("France", "Rome", "Paris"), ("Italy", "Paris", "Rome")])]
    fresh = case_metrics(model, records)
    measured = []
    real = metrics._measured
    monkeypatch.setattr(metrics, "_measured", lambda m, rs, free: measured.append(len(rs)) or real(m, rs, free))
    def agree(cases: list[dict], expected: list[dict]) -> bool:  # to float rounding: batches may differ
        return len(cases) == len(expected) and all(case == pytest.approx(e) for case, e in zip(cases, expected))

    with remembering_unedited_metrics(model):
        assert agree(case_metrics(model, records[:1]), fresh[:1])
        assert agree(case_metrics(model, records), fresh)
        case_metrics(model, records)[0]["efficacy_score"] = -1.0  # a caller's change must not reach the memory
        assert agree(case_metrics(model, records), fresh)
        assert measured == [1, 1]  # the first case once, then the second alone
        with workbench.edit(model, records[0].requested_rewrite, "rome", layer=0, v_steps=4, mom2_n_samples=200,
                            prefixes=()):
            edited = case_metrics(model, records)
            assert measured == [1, 1, 2]  # the edited model is measured
            assert edited[0]["efficacy_magnitude"] != pytest.approx(fresh[0]["efficacy_magnitude"])
        assert agree(case_metrics(model, records), fresh)
        assert measured == [1, 1, 2]
