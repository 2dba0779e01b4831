"""What SERAC costs at evaluation: the CounterFact metrics of K cases with N edits in memory.

SERAC's cost is where its edits are read: every forward pass of the edited model asks the scope
classifier about each row and runs the counterfactual model (the base model after the edit's
sentence) for the rows in scope. This script times ``case_metrics`` on the first ``--cases``
of ``--edits`` city requests (:mod:`workbench.zoo.mass_requests`) for the unedited model and for the
model with all ``--edits`` requests in a SERAC memory, alternately (``--repeats`` times each) in this
process, and reports the ratio of the medians (the machine's load affects both alike), the share of
scored rows routed to the counterfactual model, and the scores of both runs.

    python benchmarks/serac_eval_speed.py [--model smollm2-135m] [--edits 100] [--cases 20] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import time
from statistics import median

import workbench
from workbench.edit.api import edit
from workbench.evaluate.metrics import case_metrics, summarize
from workbench.zoo.mass_requests import mass_requests
from workbench.zoo.records import RECORDS

SCORES = ("efficacy_score", "paraphrase_score", "neighborhood_score")


def timed_scores(model, cases) -> tuple[float, dict]:
    started = time.perf_counter()
    scores = summarize(case_metrics(model, cases))
    return time.perf_counter() - started, {k: round(scores[k], 1) for k in SCORES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--edits", type=int, default=100)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    requests = mass_requests(model.tokenizer, RECORDS[args.model].relations(), args.edits)
    cases = requests[: args.cases]
    unedited, serac, scores = [], [], {}
    started = time.perf_counter()
    result = edit(model, requests, "serac", check_targets=False)
    edit_seconds = time.perf_counter() - started
    result.restore()
    for _ in range(args.repeats):
        seconds, scores["unedited"] = timed_scores(model, cases)
        unedited.append(seconds)
        with edit(model, requests, "serac", check_targets=False) as result:
            seconds, scores["serac"] = timed_scores(model, cases)
            serac.append(seconds)
            routing, memory_bytes = dict(result.info["routing"]), result.info["memory_bytes"]
    print(json.dumps({
        "model": args.model, "edits": args.edits, "cases": args.cases,
        "unedited_seconds": [round(s, 2) for s in unedited], "serac_seconds": [round(s, 2) for s in serac],
        "serac_over_unedited": round(median(serac) / median(unedited), 2),
        "edit_seconds": round(edit_seconds, 2), "memory_mb": round(memory_bytes / 2**20, 1),
        "rows_routed": f"{routing['routed']} of {routing['asked']}", "scores": scores,
    }, indent=1))


if __name__ == "__main__":
    main()
