"""Where SERAC loses paraphrases: the scope classifier or the counterfactual model?

    python benchmarks/serac_paraphrases.py [--model smollm2-135m] [--classifier DIR] [--out FILE]

On held-out cases (the model's evaluation split; for 1,000 edits, topped up with the first city
requests of :mod:`workbench.zoo.mass_requests`, which no trained part sees, one per (subject,
relation)), with every case's edit in memory at once:

* **routing**: the share of rewrite and paraphrase prompts the classifier puts on their own edit
  (probability >= 0.5 and the best edit), on another edit, and the share of neighbourhood prompts
  it routes anywhere (they should stay with the base model; neighbours whose subject is itself
  edited are left out, as the metrics leave them out), by the bi-encoder alone and with the
  subject match (:mod:`workbench.edit.subject_match`);
* **counterfactual, routing perfect**: the share of rewrite and paraphrase prompts on which the
  counterfactual model (the base model after the edit's sentence, ``context_repeats`` times, read
  with and without context-aware decoding) gives p(new) > p(true), i.e. ES / PS if every input were
  routed correctly (first 200 cases).

Read at each prompt's last token (the metrics also read after the target's first tokens).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

import workbench
from report import emit
from workbench.edit.scope import ScopeClassifier, prefix_features
from workbench.edit.subject_match import token_residuals
from workbench.edit.serac import SeracHyperParams, bundled_scope_classifier
from workbench.evaluate.metrics import without_edited_neighbours
from workbench.models import record_of
from workbench.probabilities import score_targets
from workbench.zoo.mass_requests import mass_requests

ORACLE_CASES = 200


def routing(model, classifier: ScopeClassifier, cases) -> dict:
    """Routing shares (percent) of each prompt group with every case's edit in memory: by the
    bi-encoder alone, and with the subject match the classifier carries (SERAC's default)."""
    tokenizer = model.tokenizer
    special = set(tokenizer.all_special_ids)
    subject = classifier.subject

    def embed(rows):
        return classifier.embed(torch.stack([f[-1] for f in prefix_features(model, rows, classifier.layer)]))

    requests = [c.requested_rewrite for c in cases]
    edits = embed([tokenizer(r.filled_prompt())["input_ids"] for r in requests])
    subject_keys = subject.edit_keys(model, [r.filled_prompt() for r in requests], [r.subject for r in requests])
    cases, _ = without_edited_neighbours(cases, [r.subject for r in requests])
    shares = {}
    groups = {"rewrite": lambda c: [c.requested_rewrite.filled_prompt()],
              "paraphrase": lambda c: list(c.paraphrase_prompts), "neighborhood": lambda c: list(c.neighborhood_prompts)}
    for group, prompts_of in groups.items():
        owners = torch.tensor([i for i, c in enumerate(cases) for _ in prompts_of(c)])
        rows = [tokenizer(p)["input_ids"] for c in cases for p in prompts_of(c)]
        best, edit = classifier.logits(embed(rows), edits).sigmoid().max(dim=1)
        in_scope = best >= 0.5
        named = torch.tensor([bool(subject.running_match(hidden[subject.layer], row, special, subject_keys[e: e + 1])[-1, 0]
                                   >= subject.threshold)
                              for row, hidden, e in zip(rows, token_residuals(model, rows, [subject.layer]), edit.tolist())])
        for name, routed in (("bi-encoder alone", in_scope), ("with subject match", in_scope & named)):
            if group == "neighborhood":
                entry = {"routed_anywhere": 100 * routed.float().mean().item(), "prompts": len(owners)}
            else:
                entry = {"to_own_edit": 100 * (routed & (edit == owners)).float().mean().item(),
                         "to_another_edit": 100 * (routed & (edit != owners)).float().mean().item()}
            shares.setdefault(name, {})[group] = entry
    return shares


def counterfactual_success(model, cases, folder: Path, context_weight: float) -> dict:
    """Share of rewrite and paraphrase prompts with p(new) > p(true) when SERAC answers every input
    from the case's own edit (one edit in memory, a classifier that puts everything in scope)."""
    hits = {"rewrite": [], "paraphrase": []}
    for case in cases:
        request = case.requested_rewrite
        with workbench.edit(model, request, "serac", classifier=str(folder), subject_match=False,
                            context_weight=context_weight, check_targets=False):
            for group, prompts in (("rewrite", [request.filled_prompt()]), ("paraphrase", case.paraphrase_prompts)):
                prompts = list(prompts)
                new = score_targets(model, prompts, [request.target_new] * len(prompts)).log_prob
                true = score_targets(model, prompts, [request.target_true] * len(prompts)).log_prob
                hits[group] += (new > true).tolist()
    return {group: 100 * sum(v) / len(v) for group, v in hits.items()}


def held_out(model, evaluation, n: int) -> list:
    """``evaluation`` topped up to ``n`` cases with the first city requests about facts it does not hold
    (a batch rewrites each (subject, relation) once)."""
    record = record_of(model)
    cases, seen = list(evaluation), {(c.requested_rewrite.subject, c.requested_rewrite.relation_id) for c in evaluation}
    for case in mass_requests(model.tokenizer, record.relations(), n):
        key = (case.requested_rewrite.subject, case.requested_rewrite.relation_id)
        if len(cases) < n and key not in seen:
            seen.add(key)
            cases.append(case)
    return cases


def everything_in_scope(model, folder: Path) -> Path:
    """A classifier (scale 0, bias +20) that routes every input, saved under ``folder``."""
    classifier = ScopeClassifier(2 * model.cfg.d_model, layer=model.cfg.n_layers // 2)
    with torch.no_grad():
        classifier.scale.zero_()
        classifier.bias.fill_(20.0)
    classifier.save(folder, model_name="everything in scope")
    return folder


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
    report = {"model": args.model, "classifier": classifier.info, "classifier_seconds": time.perf_counter() - started}
    with torch.no_grad():
        for name, cases in (("20 edits", evaluation[:20]), ("1000 edits", held_out(model, evaluation, 1000))):
            report[name] = {"routing": routing(model, classifier, cases)}
        with tempfile.TemporaryDirectory() as folder:
            oracle = everything_in_scope(model, Path(folder))
            report["counterfactual_with_perfect_routing"] = {
                f"context_weight {w}": counterfactual_success(model, evaluation[:ORACLE_CASES], oracle, w)
                for w in (0.0, SeracHyperParams().context_weight)}
    emit(report, args.out)


if __name__ == "__main__":
    main()
