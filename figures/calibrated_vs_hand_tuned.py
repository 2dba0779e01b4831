"""Calibrated settings against the hand-tuned record of smollm2-135m, on cases neither was tuned on.

    workbench calibrate smollm2-135m [--out DIR]   # first: writes the calibrated settings (into the cache)
    python figures/calibrated_vs_hand_tuned.py [--settings DIR] [--rome-cases 40] [--memit-cases 100]

The hand-tuned settings are those of ``workbench/zoo/records.py`` (tuned on the record's tuning split);
the calibrated ones were chosen on the calibration's own tuning split. The cases compared are those of
the calibrated benchmark's evaluation split whose (subject, relation) is in neither tuning split, so
neither setting has seen them. Both are measured in this process on the same cases: ROME with each case
edited alone (``run_bench``), MEMIT with all of them in one batch (``run_scaling``). Writes
``figures/calibrated_vs_hand_tuned_smollm2.json``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import workbench
from workbench.evaluate.bench import run_bench
from workbench.evaluate.scaling import run_scaling
from workbench.models import record_of

HERE = Path(__file__).parent
KEYS = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--rome-cases", type=int, default=40)
    parser.add_argument("--memit-cases", type=int, default=100)
    parser.add_argument("--settings", help="the calibrated settings folder (default: the cache's, for these weights)")
    args = parser.parse_args()
    hand = workbench.load_model(args.model, settings=False)
    calibrated = workbench.load_model(args.model, settings=args.settings or True)
    if calibrated.workbench_settings is None:
        raise SystemExit(f"no calibrated settings for {args.model}: run `workbench calibrate {args.model}` first")
    seen = {(c.requested_rewrite.subject, c.requested_rewrite.relation_id)
            for model in (hand, calibrated) for c in record_of(model).benchmark(split="tuning")}
    cases = [c for c in record_of(calibrated).benchmark(split="evaluation")
             if (c.requested_rewrite.subject, c.requested_rewrite.relation_id) not in seen]
    rows = {}
    for label, model in (("hand-tuned", hand), ("calibrated", calibrated)):
        rome = run_bench(model, cases[: args.rome_cases], "rome", fluency_tokens=0)
        memit = run_scaling(model, cases[: args.memit_cases], ["memit"], [min(args.memit_cases, len(cases))],
                            fluency_tokens=0).runs[0]
        rows[label] = {
            "rome": {"layers": rome.layers, **{k: round(rome.after[k], 2) for k in KEYS},
                     "edit_seconds": round(rome.edit_seconds, 2), "settings": rome.settings["hparams_in_effect"]},
            "memit": {**{k: round(memit["after"][k], 2) for k in KEYS}, "edit_seconds": round(memit["edit_seconds"], 1),
                      "settings": memit["hparams_in_effect"]},
            "unedited": {k: round(rome.before[k], 2) for k in KEYS},
        }
        print(label, json.dumps({m: {k: rows[label][m][k] for k in KEYS} for m in ("rome", "memit", "unedited")}),
              flush=True)
    out = HERE / f"calibrated_vs_hand_tuned_{args.model.split('-')[0]}.json"
    out.write_text(json.dumps({"cases_available": len(cases), "rome_cases": min(args.rome_cases, len(cases)),
                               "memit_cases": min(args.memit_cases, len(cases)), **rows}, indent=1) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
