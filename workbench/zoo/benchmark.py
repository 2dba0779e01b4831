"""The bundled models' CounterFact-style benchmarks: read from their records, and factgpt's rebuilt
from the knowledge base and its recall (the cases are built by :mod:`workbench.zoo.cases`).
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from workbench.data import CounterFactRecord, write_counterfact
from workbench.errors import ModelNotFoundError
from workbench.zoo.cases import build_benchmark, first_tokens

BENCHMARK_PATH = Path(__file__).parent / "data" / "counterfact_factgpt.json"


def benchmark(model: str = "factgpt", n_cases: int | None = None, *, split: str | None = None) -> list[CounterFactRecord]:
    """The CounterFact benchmark of the bundled model ``model`` (``"factgpt"``, ``"smollm2-135m"``),
    or its first ``n_cases``; ``split`` picks its ``"tuning"`` or ``"evaluation"`` cases
    (:meth:`workbench.zoo.records.ModelRecord.benchmark`)."""
    from workbench.zoo.records import RECORDS

    if model not in RECORDS:
        raise ModelNotFoundError(f"no bundled model {model!r}; bundled: {', '.join(RECORDS)}")
    return RECORDS[model].benchmark(n_cases, split=split)


def main() -> None:
    """Rebuild the bundled benchmark from the knowledge base and the bundled model's recall."""
    from workbench.models import load_model
    from workbench.zoo.knowledge import load_facts
    from workbench.zoo.recall import measure_recall
    from workbench.zoo.train import with_default_templates

    model = load_model()
    facts = load_facts()
    recall = measure_recall(model.original_model, model.tokenizer, with_default_templates(facts), progress=True)
    records = build_benchmark(facts, recall.recalled, first_tokens(model.tokenizer, facts))
    write_counterfact(records, BENCHMARK_PATH)
    relations = defaultdict(int)
    for record in records:
        relations[record.requested_rewrite.relation_id] += 1
    print(json.dumps({"cases": len(records), "by_relation": dict(sorted(relations.items()))}))


if __name__ == "__main__":
    main()
