"""Measure what smollm2-135m knows and build its record's data: prompt prefix, known facts, benchmark.

SmolLM2-135M-Instruct's tokenizer names ``<|im_start|>`` (a chat-turn marker) as its BOS, but the
model was pretrained on documents separated by ``<|endoftext|>``. Which token a prompt should start
with is measured, not assumed: every candidate fact of the real-world knowledge base
(:mod:`workbench.zoo.build_real_knowledge`) under every template of its relation is scored with
each candidate prefix (teacher-forced top-1 of the object's first token), and the prefix with the
highest recall becomes the record's.

A fact is *known* when its object's first token is top-1 under every template (the record's
templates where it replaces a relation's). The benchmark is
built from the known facts exactly as factgpt's (:func:`workbench.zoo.cases.build_benchmark`):
paraphrases are the relation's other templates, neighbours are other known subjects with the same
object, so the unedited model answers every paraphrase and neighbour correctly.

Run ``python -m workbench.zoo.smollm2 build`` (about 10 minutes on 2 cores) to rewrite
``zoo/smollm2/known_facts.jsonl``, ``counterfact.json`` and ``measurements.json``;
``python -m workbench.zoo.smollm2 corpus --layer L`` compares statistics corpora by ROME's Score on
the benchmark's tuning split.
"""
from __future__ import annotations

import json
from collections import Counter

from workbench.data import Fact, write_counterfact
from workbench.zoo.cases import build_benchmark, first_tokens
from workbench.zoo.build_real_knowledge import REAL_FACTS_PATH
from workbench.zoo.knowledge import facts_by_relation, load_facts
from workbench.zoo.recall import RecallReport, measure_recall
from workbench.zoo.records import RECORDS
from workbench.zoo.relations import Relation
from workbench.zoo.recall import TrainingFact

PREFIX_CANDIDATES: dict[str, str | None] = {"<|im_start|>": "<|im_start|>", "nothing": None,
                                            "<|endoftext|>": "<|endoftext|>"}


PREFIX_SAMPLE = 40
"""Facts per relation (every k-th, deterministic) on which the prefixes are compared."""


def _with_templates(facts: list[Fact], relations: dict[str, Relation], first: bool) -> list[TrainingFact]:
    return [TrainingFact(f, relations[f.relation_id].templates[:1] if first else relations[f.relation_id].templates[1:])
            for f in facts]


def build() -> None:
    """Compare prefixes on a sample, then measure recall of every candidate with the best one (the
    rewrite template first; the paraphrase templates only for facts that pass it) and write the known
    facts, the benchmark and the measurements."""
    import workbench

    record = RECORDS["smollm2-135m"]
    model = workbench.load_model(record.name)
    tokenizer, hf_model, relations = model.tokenizer, model.original_model, record.relations()
    facts = load_facts(REAL_FACTS_PATH)
    by_relation = facts_by_relation(facts)
    sample = [f for group in by_relation.values() for f in group[:: max(1, len(group) // PREFIX_SAMPLE)][:PREFIX_SAMPLE]]

    def recall(items: list[TrainingFact], token: str | None) -> RecallReport:
        prefix = [] if token is None else [tokenizer.convert_tokens_to_ids(token)]
        return measure_recall(hf_model, tokenizer, items, batch_size=64, progress=True, prefix=prefix)

    sample_items = [TrainingFact(f, relations[f.relation_id].templates) for f in sample]
    by_prefix = {label: recall(sample_items, token) for label, token in PREFIX_CANDIDATES.items()}
    best = max(by_prefix, key=lambda label: by_prefix[label].overall.first_token)
    if PREFIX_CANDIDATES[best] != record.prefix:
        raise SystemExit(f"the best prefix is {best!r}, the record says {record.prefix!r}: update the record first")
    rewrite = recall(_with_templates(facts, relations, first=True), record.prefix)
    passed = [f for f in facts if (f.subject, f.relation_id) in rewrite.recalled]
    paraphrases = recall(_with_templates(passed, relations, first=False), record.prefix)
    known = [f for f in passed if (f.subject, f.relation_id) in paraphrases.recalled]
    (record.folder / "known_facts.jsonl").write_text("".join(
        json.dumps({"subject": f.subject, "relation_id": f.relation_id, "object": f.object}, ensure_ascii=False) + "\n"
        for f in known), encoding="utf-8")
    recalled = {(f.subject, f.relation_id) for f in known}
    cases = build_benchmark(facts, recalled, first_tokens(tokenizer, facts), relations=relations)
    write_counterfact(cases, record.folder / "counterfact.json")
    count = lambda items: dict(sorted(Counter(items).items()))  # noqa: E731
    measurements = {
        "candidates": {"facts": len(facts), "by_relation": count(f.relation_id for f in facts)},
        "prefix_comparison": {"facts": len(sample), **{label: r.to_dict() for label, r in by_prefix.items()}},
        "prefix": best,
        "rewrite_template_recall": rewrite.to_dict(),
        "known": {"facts": len(known), "by_relation": count(f.relation_id for f in known)},
        "benchmark": {"cases": len(cases), "by_relation": count(c.requested_rewrite.relation_id for c in cases)},
    }
    (record.folder / "measurements.json").write_text(json.dumps(measurements, indent=2) + "\n")
    print(json.dumps({k: measurements[k] for k in ("prefix", "known", "benchmark")}, indent=2))


def compare_corpora(names: list[str], n_cases: int, layer: int, n_texts: int) -> dict:
    """ROME's CounterFact scores on ``n_cases`` tuning cases with C from each named corpus."""
    import workbench
    from workbench.edit.stats import using_corpus
    from workbench.evaluate.bench import run_bench
    from workbench.zoo.corpora import CORPORA

    model = workbench.load_model("smollm2-135m")
    cases, scores = RECORDS["smollm2-135m"].benchmark(n_cases, split="tuning"), {}
    for name in names:
        with using_corpus(CORPORA[name]()[:n_texts], name):
            result = run_bench(model, cases, "rome", layer=layer, fluency_tokens=0)
        scores[name] = {key: round(result.after[key], 2) for key in
                        ("efficacy_score", "paraphrase_score", "neighborhood_score", "score")}
        print(name, scores[name], flush=True)
    return scores


def main(argv: list[str] | None = None) -> None:
    """``build``: measure and write the record's data; ``corpus``: compare statistics corpora by ROME's Score."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m workbench.zoo.smollm2")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build")
    corpus = commands.add_parser("corpus")
    corpus.add_argument("--names", default="wikipedia-vital-leads,factgpt-training")
    corpus.add_argument("--cases", type=int, default=20)
    corpus.add_argument("--layer", type=int, required=True)
    corpus.add_argument("--texts", type=int, default=2000, help="texts of each corpus used for C")
    args = parser.parse_args(argv)
    if args.command == "build":
        build()
    else:
        print(json.dumps(compare_corpora(args.names.split(","), args.cases, args.layer, args.texts), indent=2))


if __name__ == "__main__":
    main()
