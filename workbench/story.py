"""The main job: the end-to-end story of the workbench on the bundled fact model.

So far it loads the model (or, if the bundled weights are missing, a freshly built tiny GPT-2)
and shows it answering facts of its knowledge base, one per relation.
"""
from __future__ import annotations

import tempfile

from workbench.errors import ModelNotFoundError
from workbench.models import load_model
from workbench.predict import greedy_completion, top_predictions
from workbench.zoo.knowledge import facts_by_relation, load_facts
from workbench.zoo.relations import RELATIONS
from workbench.zoo.tiny import build_tiny_model


def run_story(model_name: str = "factgpt") -> None:
    """Print, for one fact per relation, the prompt, the true object and the model's answer."""
    try:
        model = load_model(model_name)
        label = model_name
    except ModelNotFoundError as missing:
        if model_name != "factgpt":
            raise
        print(f"{missing}\nFalling back to a freshly built, untrained tiny GPT-2.")
        model = load_model(build_tiny_model("gpt2", tempfile.mkdtemp(prefix="workbench-tiny-")))
        label = "tiny random GPT-2 (its answers are noise)"
    print(f"Model: {label}: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}\n")
    rows = [("relation", "prompt", "true object", "model says", "p(top-1)")]
    for relation_id, facts in facts_by_relation(load_facts()).items():
        fact = facts[len(facts) // 2]
        prompt = RELATIONS[relation_id].prompt(fact.subject)
        answer = greedy_completion(model, prompt, max_new_tokens=6).strip()
        best = top_predictions(model, prompt, k=1)[0]
        rows.append((relation_id, prompt, fact.object, answer, f"{best.probability:.2f}"))
    _print_table(rows)


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
