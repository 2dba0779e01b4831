"""Mass edit requests from GeoNames cities: enough of them, well-formed, true to the source."""
from __future__ import annotations

import pytest

import workbench
from workbench.zoo.mass_requests import city_facts, mass_requests
from workbench.zoo.records import RECORDS


@pytest.fixture(scope="module")
def cases():
    tokenizer = workbench.load_model("factgpt").tokenizer
    return mass_requests(tokenizer, RECORDS["factgpt"].relations(), n=10_000), tokenizer


def test_cities_have_their_countries():
    countries = {fact.subject: fact.object for fact in city_facts()}
    assert countries["Shanghai"] == "China" and countries["Nairobi"] == "Kenya" and countries["Lyon"] == "France"
    assert len(countries) == len(city_facts())  # one country per city name


def test_ten_thousand_well_formed_requests(cases):
    records, tokenizer = cases
    countries = {fact.subject: fact.object for fact in city_facts()}
    assert len(records) == 10_000 and len({r.requested_rewrite.subject for r in records}) == 10_000
    for record in records[:500]:
        request = record.requested_rewrite
        assert countries[request.subject] == request.target_true
        first = lambda word: tokenizer(" " + word, add_special_tokens=False)["input_ids"][0]  # noqa: E731
        assert first(request.target_new) != first(request.target_true)
        assert 2 <= len(record.neighborhood_prompts) <= 10 and record.paraphrase_prompts
        neighbours = [city for city, country in countries.items() if country == request.target_true]
        assert all(any(city in prompt for city in neighbours) for prompt in record.neighborhood_prompts)
