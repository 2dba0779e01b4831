"""ROME timings on one model: second-moment statistics per million tokens, and one edit with the
statistics cached; plus how edit quality changes with fewer statistics samples.

    python benchmarks/rome_speed.py [--model factgpt] [--cases 50] [--samples 100,1000,all]

Wall times on a shared machine are noisy; the statistics rate and the edit time are measured
in the same process. Quality is the CounterFact Score on the bundled benchmark's first cases; a
sample count too small for an invertible second moment is reported as such.
"""
from __future__ import annotations

import argparse
import json
import time

import torch

import workbench
from workbench.edit.layers import default_edit_layer
from workbench.edit.stats import accumulate_second_moment
from workbench.errors import InvalidRequestError
from workbench.evaluate.bench import run_bench
from workbench.models import record_of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="factgpt")
    parser.add_argument("--cases", type=int, default=50)
    parser.add_argument("--samples", default="100,1000,all")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    record = record_of(model)
    layer = default_edit_layer(model, record.known_facts(48))
    texts = list(record.corpus_texts())

    started = time.perf_counter()
    _, tokens = accumulate_second_moment(model, layer, texts, progress=False)
    stats_seconds = time.perf_counter() - started

    records = record.benchmark(args.cases)
    quality = {}
    for setting in args.samples.split(","):
        n_samples = None if setting == "all" else int(setting)
        # statistics are cached per sample count, so edit times below exclude computing them
        try:
            result = run_bench(model, records, "rome", layer=layer, fluency_tokens=0, progress=False,
                               mom2_n_samples=n_samples)
        except InvalidRequestError as error:
            if "singular" not in str(error):
                raise
            quality[setting] = {"error": str(error)}  # fewer independent keys than the MLP is wide
            continue
        quality[setting] = {k: round(result.after[k], 2) for k in ("efficacy_score", "paraphrase_score",
                                                                   "neighborhood_score", "score")}
        quality[setting]["edit_seconds"] = round(result.edit_seconds, 3)
    report = {
        "model": args.model,
        "layer": layer,
        "stats_tokens": tokens,
        "stats_seconds": round(stats_seconds, 2),
        "stats_seconds_per_million_tokens": round(stats_seconds / tokens * 1e6, 1),
        "edit_seconds_stats_cached": quality.get("all", {}).get("edit_seconds"),
        "quality_by_stats_samples": quality,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
