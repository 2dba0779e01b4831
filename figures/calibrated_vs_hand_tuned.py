"""The calibrated settings of smollm2-135m against the hand-tuned ones they replaced, on its evaluation split.

    python figures/calibrated_vs_hand_tuned.py [--settings DIR] [--rome-cases 40] [--memit-cases 100]

The calibrated settings are those ``smollm2-135m`` ships (``workbench/zoo/smollm2/calibrated``, written
by ``workbench calibrate smollm2-135m --out workbench/zoo/smollm2/calibrated``), or the folder
``--settings`` names. The hand-tuned settings are :data:`HAND_TUNED`, the record's settings until
calibration replaced them (model card, "History"). Both were chosen on the record's tuning split;
the cases compared are the first of its evaluation split, which neither has seen, measured in this
process: ROME with each case edited alone (``run_bench``), MEMIT with all of them in one batch
(``run_scaling``). Writes ``figures/calibrated_vs_hand_tuned_smollm2.json``.
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
HAND_TUNED = {
    "rome": {"layer": 4, "prefixes": (), "v_lr": 1.0, "stop_loss": 0.1, "mom2_n_samples": 2000, "clamp_norm_factor": 4.0},
    "memit": {"layer": [0, 1, 2, 3, 4], "prefixes": (), "v_lr": 1.0, "stop_on": "target", "stop_loss": 0.69,
              "passes": 2, "mom2_update_weight": 6000.0, "mom2_n_samples": 2000},
}
"""smollm2-135m's hand-tuned ROME and MEMIT settings (git history of ``workbench/zoo/records.py``). Every setting
that differed from the library's defaults is named, and so is any the calibration now sets (ROME's bound,
then the default 4): names left out are filled from the model's calibration."""


def measure(model, cases_rome, cases_memit, settings: dict | None) -> dict:
    """ROME (each case alone) and MEMIT (one batch) with ``settings`` (None: the model's own)."""
    rome_settings = dict(settings["rome"]) if settings else {}
    rome_layer = rome_settings.pop("layer", None)
    rome = run_bench(model, cases_rome, "rome", layer=rome_layer, fluency_tokens=0, **rome_settings)
    memit_settings = {"memit": dict(settings["memit"])} if settings else None
    memit = run_scaling(model, cases_memit, ["memit"], [len(cases_memit)], fluency_tokens=0,
                        hparams=memit_settings).runs[0]
    return {
        "rome": {"layers": rome.layers, **{k: round(rome.after[k], 2) for k in KEYS},
                 "edit_seconds": round(rome.edit_seconds, 2), "settings": rome.settings["hparams_in_effect"]},
        "memit": {**{k: round(memit["after"][k], 2) for k in KEYS}, "edit_seconds": round(memit["edit_seconds"], 1),
                  "settings": memit["hparams_in_effect"]},
        "unedited": {k: round(rome.before[k], 2) for k in KEYS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rome-cases", type=int, default=40)
    parser.add_argument("--memit-cases", type=int, default=100)
    parser.add_argument("--settings", help="a calibrated settings folder (default: the shipped calibration)")
    args = parser.parse_args()
    model = workbench.load_model("smollm2-135m", settings=args.settings or False)
    cases = record_of(model).benchmark(split="evaluation")
    rows = {}
    for label, settings in (("hand-tuned", HAND_TUNED), ("calibrated", None)):
        rows[label] = measure(model, cases[: args.rome_cases], cases[: args.memit_cases], settings)
        print(label, json.dumps({m: {k: rows[label][m][k] for k in KEYS} for m in ("rome", "memit", "unedited")}),
              flush=True)
    out = HERE / "calibrated_vs_hand_tuned_smollm2.json"
    out.write_text(json.dumps({"split": "evaluation", "rome_cases": len(cases[: args.rome_cases]),
                               "memit_cases": len(cases[: args.memit_cases]),
                               "calibration": str(record_of(model).calibration().directory), **rows}, indent=1) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
