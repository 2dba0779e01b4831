"""Relations of the bundled knowledge base, with Wikidata property ids and English prompt templates.

Each template is a prompt that ends right before the object, with one ``{}`` for the subject:
``template.format(subject) + " " + object`` is a true sentence. The first template of a relation
is its canonical prompt; the others are paraphrases for training and evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Relation:
    """A relation: Wikidata-style id, English name and prompt templates (``{}`` marks the subject)."""

    relation_id: str
    name: str
    templates: tuple[str, ...]

    def prompt(self, subject: str, i: int = 0) -> str:
        """The ``i``-th template filled with ``subject``, e.g. ``"The capital of France is"``."""
        return self.templates[i].format(subject)


RELATIONS: dict[str, Relation] = {
    r.relation_id: r
    for r in (
        Relation("P36", "capital", (
            "The capital of {} is",
            "{}'s capital city is",
            "The capital city of {} is",
            "{} has its capital in",
        )),
        Relation("P1376", "capital of", (
            "{} is the capital of",
            "{} is the capital city of",
            "{} serves as the capital of",
        )),
        Relation("P30", "continent", (
            "{} is located on the continent of",
            "{} is part of the continent of",
            "{} lies on the continent of",
        )),
        Relation("P38", "currency", (
            "The currency of {} is the",
            "The official currency of {} is the",
            "{}'s currency is the",
            "The legal tender of {} is the",
        )),
        Relation("P37", "official language", (
            "The official language of {} is",
            "{}'s official language is",
            "In {}, the official language is",
        )),
        Relation("P17", "country", (
            "{} is a city in",
            "{} is located in the country of",
            "The city of {} lies in",
        )),
        Relation("P131", "located in the administrative territorial entity", (
            "{} is a county in the state of",
            "{} is located in the US state of",
            "{} is part of the state of",
        )),
        Relation("P246", "element symbol", (
            "The chemical symbol for {} is",
            "The element {} has the symbol",
            "{}'s chemical symbol is",
        )),
        Relation("P1086", "atomic number", (
            "The atomic number of {} is",
            "{} has the atomic number",
            "The element {} has atomic number",
        )),
            # Relations of the real-world knowledge base (smollm2-135m); factgpt was not taught them.
        Relation("P106", "occupation", (
            "{} is best known as a",
            "{} was a well-known",
            "By profession, {} was a",
        )),
        Relation("P27", "nationality", (
            "{} was a famous",
            "{} was a well-known",
            "{} was a celebrated",
        )),
        Relation("P276", "location (landmark -> city)", (
            "{} is located in the city of",
            "{} can be found in the city of",
            "To visit {}, you have to travel to the city of",
        )),
        Relation("P495", "country of origin (company)", (
            "{} is a company from the country of",
            "The company {} is headquartered in the country of",
            "{} is a company based in the country of",
        )),
    )
}

FACTGPT_RELATION_IDS: tuple[str, ...] = ("P36", "P1376", "P30", "P38", "P37", "P17", "P131", "P246", "P1086")
"""The relations of the bundled fact model's knowledge base (``data/facts.jsonl``)."""
