"""Free-generation metrics: the judging rules on written-out cases, and greedy generation checked
against an independent one-prompt-at-a-time loop and against facts the bundled model was trained on."""
from __future__ import annotations

import pytest

import workbench
from workbench.data import CounterFactRecord, EditRequest
from workbench.evaluate.generation import (
    exact_match, first_statement, generation_metrics, greedy_answers, normalise, token_f1,
)
from workbench.models import record_of
from workbench.predict import greedy_completion


def test_normalisation_drops_case_punctuation_and_articles():
    assert normalise("The  City of Rome, Italy.") == ["city", "of", "rome", "italy"]


def test_exact_match_is_a_word_prefix():
    assert exact_match("Rome, the capital of Italy", "Rome")
    assert exact_match("the United States", "United States")
    assert not exact_match("Romania", "Rome")
    assert not exact_match("in Rome", "Rome")  # a preamble is a miss, as in first-answer judging
    assert not exact_match("Rome", "")


def test_token_f1_against_hand_computed_values():
    assert token_f1("Rome", "Rome") == 1.0
    assert token_f1("Rome Italy", "Rome") == pytest.approx(2 * 0.5 * 1.0 / 1.5)  # precision 1/2, recall 1
    assert token_f1("New York City", "New Delhi") == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
    assert token_f1("Paris", "Rome") == 0.0


def test_a_generation_ends_at_its_first_line_or_sentence():
    assert first_statement(" Paris. It is") == " Paris"
    assert first_statement(" Paris\nThe") == " Paris"
    assert first_statement(" 3.5 million") == " 3.5 million"  # a decimal point is not a sentence end


@pytest.fixture(scope="module")
def factgpt():
    return workbench.load_model("factgpt")


def test_batched_greedy_answers_equal_one_prompt_at_a_time(factgpt):
    facts = record_of(factgpt).known_facts(12)
    prompts = [prompt for prompt, _, _ in facts] + ["The capital of", "Paris is"]  # lengths differ
    answers = [answer for _, _, answer in facts] + ["France", "a city in France"]
    batched = greedy_answers(factgpt, prompts, answers)
    for prompt, answer, text in zip(prompts, answers, batched):
        budget = len(factgpt.tokenizer(" " + answer, add_special_tokens=False)["input_ids"]) + 3
        alone = greedy_completion(factgpt, prompt, max_new_tokens=budget)
        assert text == first_statement(alone).strip(), prompt


def test_the_trained_model_says_the_facts_it_knows_and_not_the_counterfactual(factgpt):
    cases = record_of(factgpt).benchmark(20, split="evaluation")
    rows = generation_metrics(factgpt, cases, keep_texts=True)
    # every rewrite prompt of the benchmark is a fact factgpt answers (teacher-forced top-1 per token)
    truths = generation_metrics(factgpt, [_swapped(case) for case in cases])
    assert all(row["efficacy_generation_em"] == 100.0 for row in truths)
    assert all(row["efficacy_generation_em"] == 0.0 for row in rows)  # nobody says the new object unedited
    assert sum(row["neighborhood_generation_em"] for row in rows) / len(rows) > 90
    assert set(rows[0]["generations"]) == {"efficacy", "paraphrase", "neighborhood"}


def _swapped(case: CounterFactRecord) -> CounterFactRecord:
    """The case with its true object as the one to say (judging the unedited model's own answer)."""
    request = case.requested_rewrite
    return CounterFactRecord(case.case_id, EditRequest(request.prompt, request.subject, request.target_true,
                                                       request.target_new))
