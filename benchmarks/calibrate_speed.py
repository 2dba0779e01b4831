"""How long ``workbench calibrate`` takes on a model, from an empty statistics cache, stage by stage.

The issue's goal is at most 15 minutes on 2 cores for a 135-270M model. To be honest about the cost a
user sees the first time, the run uses a fresh ``$WORKBENCH_CACHE`` (no statistics, no settings); only
the model conversion (GGUF -> Hugging Face directory, a one-off that is not calibration) is reused
from the usual cache. As a same-process baseline for the machine's speed, one forward pass over the
first 100 corpus texts is timed before and after, so a reader can tell a slow machine from a slow
calibration (the ratio calibration / baseline pass is what stays comparable across machines).

    python benchmarks/calibrate_speed.py --model gemma3-270m [--budget SECONDS] [--out figures/calibrate_gemma3.json] [--install]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gemma3-270m")
    parser.add_argument("--budget", type=float, default=None)
    parser.add_argument("--out", help="write the settings' content and the timings here (JSON)")
    parser.add_argument("--install", action="store_true",
                        help="afterwards, copy the settings and statistics into the usual cache, where load_model finds them")
    args = parser.parse_args()
    usual = Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench"))
    fresh = Path(tempfile.mkdtemp(prefix="workbench-calibrate-bench-"))
    if (usual / "models").is_dir():
        (fresh / "models").symlink_to(usual / "models")
    if (usual / "gguf").is_dir():
        (fresh / "gguf").symlink_to(usual / "gguf")
    os.environ["WORKBENCH_CACHE"] = str(fresh)

    import torch

    import workbench
    from workbench.zoo.corpora import wikipedia_vital_leads

    model = workbench.load_model(args.model, settings=False)

    def baseline_pass() -> float:
        ids = [model.tokenizer(text)["input_ids"] for text in wikipedia_vital_leads()[:100]]
        started = time.perf_counter()
        with torch.no_grad():
            for row in ids:
                model.original_model(torch.tensor([row]))
        return time.perf_counter() - started

    before = baseline_pass()
    started = time.perf_counter()
    settings = workbench.calibrate(model, budget_seconds=args.budget)
    seconds = time.perf_counter() - started
    after = baseline_pass()
    content = dict(settings.content)
    report = {"model": args.model, "threads": torch.get_num_threads(), "calibration_seconds": round(seconds, 1),
              "stage_seconds": content["stage_seconds"], "baseline_pass_seconds": [round(before, 2), round(after, 2)],
              "ratio_to_baseline_pass": round(seconds / ((before + after) / 2), 1), "budget_seconds": args.budget}
    print(json.dumps(report, indent=1))
    summary = {key: content[key] for key in ("prompt", "facts", "statistics", "editors")}
    summary["layers"] = {"tracing_peak": content["layers"]["tracing"]["peak"],
                         "sweep_best": content["layers"]["sweep"]["best_layer"]}
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"timing": report, "settings": content}, indent=1) + "\n")
    if args.install:
        import shutil

        for folder in ("settings", "stats"):
            shutil.copytree(fresh / folder, usual / folder, dirs_exist_ok=True)


if __name__ == "__main__":
    main()
