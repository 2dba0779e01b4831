"""Teacher-forced scores against free generation, case by case, with the generations themselves.

    python figures/free_generation.py [--model smollm2-135m] [--method rome] [--cases 30]

Each of the first ``--cases`` evaluation cases is edited alone (as ``workbench bench`` does), and for
each prompt group the teacher-forced score (p(new) > p(true), or the reverse for neighbours) is set
beside the free-generation exact match, with the greedy generations kept. Writes
``figures/free_generation_<model>_<method>.json``: per case both families' numbers and the texts,
and a count of the prompts where the two families disagree, by group and direction.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import workbench
from workbench.evaluate.generation import exact_match, greedy_answers
from workbench.probabilities import score_targets
from workbench.models import record_of

HERE = Path(__file__).parent


def judged_prompts(model, case) -> list[dict]:
    """Every prompt of the case: its group, both families' verdicts and the generation."""
    request = case.requested_rewrite
    rows = [(group, prompt) for group, prompts in case.prompts_by_group().items() for prompt in prompts]
    prompts = [prompt for _, prompt in rows]
    new = score_targets(model, prompts, [request.target_new] * len(prompts)).log_prob.tolist()
    true = score_targets(model, prompts, [request.target_true] * len(prompts)).log_prob.tolist()
    answers = [request.target_true if group == "neighborhood" else request.target_new for group, _ in rows]
    texts = greedy_answers(model, prompts, answers)
    return [{"group": group, "prompt": prompt, "teacher_forced": (n < t) if group == "neighborhood" else (n > t),
             "generation": text, "exact_match": exact_match(text, answer)}
            for (group, prompt), n, t, text, answer in zip(rows, new, true, texts, answers)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--method", default="rome")
    parser.add_argument("--cases", type=int, default=30)
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    cases = record_of(model).benchmark(args.cases, split="evaluation")
    out, disagreements = [], {}
    for case in cases:
        request = case.requested_rewrite
        with workbench.edit(model, case, args.method, check_targets=False):
            judged = judged_prompts(model, case)
        for row in judged:
            if row["teacher_forced"] != row["exact_match"]:
                key = f"{row['group']}: teacher-forced {'yes' if row['teacher_forced'] else 'no'}, generation " \
                      f"{'yes' if row['exact_match'] else 'no'}"
                disagreements[key] = disagreements.get(key, 0) + 1
        out.append({"case_id": case.case_id, "subject": request.subject, "target_true": request.target_true,
                    "target_new": request.target_new, "prompts": judged})
    totals = {group: {"prompts": sum(r["group"] == group for c in out for r in c["prompts"]),
                      "teacher_forced": sum(r["teacher_forced"] for c in out for r in c["prompts"] if r["group"] == group),
                      "exact_match": sum(r["exact_match"] for c in out for r in c["prompts"] if r["group"] == group)}
              for group in ("efficacy", "paraphrase", "neighborhood")}
    path = HERE / f"free_generation_{args.model}_{args.method}.json"
    path.write_text(json.dumps({"model": args.model, "method": args.method, "cases": len(cases), "totals": totals,
                                "disagreements": disagreements, "per_case": out}, indent=1, ensure_ascii=False) + "\n")
    print(json.dumps({"totals": totals, "disagreements": disagreements}, indent=1))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
