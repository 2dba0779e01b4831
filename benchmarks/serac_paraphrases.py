"""Where SERAC loses paraphrases: the scope classifier or the counterfactual model?

    python benchmarks/serac_paraphrases.py [--model smollm2-135m] [--classifier DIR] [--out FILE]

On held-out cases (the model's evaluation split; for 1,000 edits, topped up with the first city
requests of :mod:`workbench.zoo.mass_requests`, which no trained part sees), with every case's
edit in memory at once:

* **routing**: the share of rewrite and paraphrase prompts the classifier puts on their own edit
  (probability >= 0.5 and the best edit), on another edit, and the share of neighbourhood prompts
  it routes anywhere (they should stay with the base model; neighbours whose subject is itself
  edited are left out, as the metrics leave them out);
* **counterfactual, routing perfect**: the share of rewrite and paraphrase prompts on which the
  counterfactual model (the base model after the edit's sentence, ``context_repeats`` times) gives
  p(new) > p(true), i.e. ES / PS if every input were routed correctly (first 200 cases).

Read at each prompt's last token (the metrics also read after the target's first tokens).
"""
from __future__ import annotations

import argparse
import time

import torch

import workbench
from report import emit
from workbench.edit.scope import ScopeClassifier, prefix_features
from workbench.edit.serac import SeracHyperParams, bundled_scope_classifier
from workbench.evaluate.metrics import without_edited_neighbours
from workbench.models import record_of
from workbench.probabilities import score_targets
from workbench.zoo.mass_requests import mass_requests

ORACLE_CASES = 200


def routing(model, classifier: ScopeClassifier, cases) -> dict:
    """Routing shares (percent) of each prompt group with every case's edit in memory."""
    tokenizer = model.tokenizer

    def embed(prompts):
        rows = [tokenizer(p)["input_ids"] for p in prompts]
        return classifier.embed(torch.stack([f[-1] for f in prefix_features(model, rows, classifier.layer)]))

    edits = embed([c.requested_rewrite.filled_prompt() for c in cases])
    cases, _ = without_edited_neighbours(cases, [c.requested_rewrite.subject for c in cases])
    shares = {}
    groups = {"rewrite": lambda c: [c.requested_rewrite.filled_prompt()],
              "paraphrase": lambda c: list(c.paraphrase_prompts), "neighborhood": lambda c: list(c.neighborhood_prompts)}
    for group, prompts_of in groups.items():
        owners = torch.tensor([i for i, c in enumerate(cases) for _ in prompts_of(c)])
        probabilities = classifier.logits(embed([p for c in cases for p in prompts_of(c)]), edits).sigmoid()
        best, edit = probabilities.max(dim=1)
        routed = best >= 0.5
        if group == "neighborhood":
            shares[group] = {"routed_anywhere": 100 * routed.float().mean().item(), "prompts": len(owners)}
        else:
            shares[group] = {"to_own_edit": 100 * (routed & (edit == owners)).float().mean().item(),
                             "to_another_edit": 100 * (routed & (edit != owners)).float().mean().item()}
    return shares


def counterfactual_success(model, cases, repeats: int) -> dict:
    """Share of rewrite and paraphrase prompts where the edit's sentence before them makes p(new) > p(true)."""
    rows = []  # (group, prompt with the edit's sentence before it, new, true)
    for case in cases:
        request = case.requested_rewrite
        sentence = f"{request.filled_prompt()} {request.target_new.strip()}.\n" * repeats
        for group, prompts in (("rewrite", [request.filled_prompt()]), ("paraphrase", case.paraphrase_prompts)):
            rows += [(group, sentence + p, request.target_new, request.target_true) for p in prompts]
    prompts = [r[1] for r in rows]
    new = score_targets(model, prompts, [r[2] for r in rows]).log_prob
    true = score_targets(model, prompts, [r[3] for r in rows]).log_prob
    return {group: 100 * torch.tensor([bool(n > t) for r, n, t in zip(rows, new, true) if r[0] == group]).float().mean().item()
            for group in ("rewrite", "paraphrase")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--classifier", help="a classifier folder (default: the bundled model's, trained on first use)")
    parser.add_argument("--out")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    record = record_of(model)
    started = time.perf_counter()
    classifier = ScopeClassifier.load(args.classifier, model) if args.classifier else bundled_scope_classifier(model)
    evaluation = record.benchmark(split="evaluation")
    top_up = mass_requests(model.tokenizer, record.relations(), max(0, 1000 - len(evaluation)))
    report = {"model": args.model, "classifier": classifier.info, "classifier_seconds": time.perf_counter() - started}
    with torch.no_grad():
        for name, cases in (("20 edits", evaluation[:20]), ("1000 edits", (evaluation + top_up)[:1000])):
            report[name] = {"routing": routing(model, classifier, cases)}
        report["counterfactual_with_perfect_routing"] = counterfactual_success(
            model, evaluation[:ORACLE_CASES], SeracHyperParams().context_repeats)
    emit(report, args.out)


if __name__ == "__main__":
    main()
