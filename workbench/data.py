"""The data model: facts, edit requests, and CounterFact / zsRE records with their readers and writers."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple, e.g. ``Fact("France", "P36", "Paris")``.

    ``relation_id`` follows Wikidata property ids where one exists (P36 capital, ...).
    """

    subject: str
    relation_id: str
    object: str
