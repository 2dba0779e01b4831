"""MEMIT's target search (the z_i of Meng et al. 2023, section 4.3) at 10 to 1,000 requests.

The search dominates mass editing. Three variants run alternately in this process on the same
requests (real cities, :mod:`workbench.zoo.mass_requests`), layer and settings (the model record's
MEMIT settings), so machine load affects them alike and the ratios are what is reported:

* ``one_at_a_time``: the same search with one request per batch, the structure of the reference
  implementations (one request's optimisation after another); run on the smallest N only;
* ``batched``: up to ``chunk_requests`` requests per batch, each leaving the batch when its loss
  is reached (the workbench's default);
* ``batched_bfloat16``: the same under bfloat16 autocast.

Quality: the share of requests whose search reached the stop loss and the mean final NLL; with
``--es-cases K`` also MEMIT's efficacy and paraphrase scores after writing the first K requests
with float32 and with bfloat16 targets.

    python benchmarks/memit_search_speed.py [--requests 10,100,1000] [--bfloat16-max 10] [--es-cases 100]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

import workbench
from workbench import families
from workbench.edit.api import edit
from workbench.edit.contexts import sample_prefixes
from workbench.edit.memit import MemitHyperParams
from workbench.edit.spread import mass_edit_layers
from workbench.edit.stats import pinned_statistics, second_moments, using_corpus
from workbench.edit.targets import optimise_value_deltas
from workbench.evaluate.metrics import case_metrics, summarize
from workbench.models import record_of
from workbench.zoo.mass_requests import mass_requests
from workbench.zoo.records import RECORDS


def search(model, hook, requests, templates, hparams: MemitHyperParams, chunk: int, dtype: str) -> dict:
    """Time one target search; its stop-loss share and mean final NLL."""
    settings = dataclasses.replace(hparams.value_search(), dtype=dtype)
    started = time.perf_counter()
    found = optimise_value_deltas(model, hook, requests, templates, settings, chunk_requests=chunk)
    seconds = time.perf_counter() - started
    reached = sum(nll < settings.stop_loss for nll in found.final_nll)
    return {"seconds_per_request": round(seconds / len(requests), 3), "reached_stop_loss": round(reached / len(requests), 3),
            "mean_final_nll": round(sum(found.final_nll) / len(requests), 3), "mean_steps": round(sum(found.steps) / len(requests), 2)}


def edit_quality(model, cases, dtype: str) -> dict:
    """Efficacy and paraphrase scores after MEMIT writes ``cases`` with targets searched in ``dtype``."""
    with edit(model, cases, "memit", check_targets=False, v_dtype=dtype):
        scores = summarize(case_metrics(model, cases))
    return {k: round(scores[k], 1) for k in ("efficacy_score", "paraphrase_score", "neighborhood_score")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--requests", default="10,100,1000")
    parser.add_argument("--es-cases", type=int, default=0)
    parser.add_argument("--bfloat16-max", type=int, help="run the bfloat16 variant only up to this many requests "
                        "(on a CPU without fast bfloat16 kernels it is much slower)")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    record = record_of(model)
    tuned = {k: v for k, v in record.editor_settings["memit"].items() if k != "layer"}
    hparams = MemitHyperParams(**tuned)
    layers = mass_edit_layers(model, record.editor_settings["memit"]["layer"], hparams.span)
    hook = families.Hooks.resid_post(layers[-1])
    counts = [int(n) for n in args.requests.split(",")]
    cases = mass_requests(model.tokenizer, RECORDS[args.model].relations(), max(counts + [args.es_cases]))
    report = {"model": args.model, "layers": layers, "chunk_requests": hparams.chunk_requests,
              "threads": torch.get_num_threads(), "by_requests": {}}
    with using_corpus(record.corpus_texts(), record.corpus), pinned_statistics(model):
        templates = sample_prefixes(model, hparams.prefixes, hparams.seed)
        for n in counts:
            requests = [case.requested_rewrite for case in cases[:n]]
            row = {"batched": search(model, hook, requests, templates, hparams, hparams.chunk_requests, "float32")}
            if args.bfloat16_max is None or n <= args.bfloat16_max:
                row["batched_bfloat16"] = search(model, hook, requests, templates, hparams, hparams.chunk_requests,
                                                 "bfloat16")
                row["ratio_float32_to_bfloat16"] = round(
                    row["batched"]["seconds_per_request"] / row["batched_bfloat16"]["seconds_per_request"], 2)
            if n == min(counts):
                row["one_at_a_time"] = search(model, hook, requests, templates, hparams, 1, "float32")
                row["ratio_one_at_a_time_to_batched"] = round(
                    row["one_at_a_time"]["seconds_per_request"] / row["batched"]["seconds_per_request"], 2)
            report["by_requests"][n] = row
            print(json.dumps({n: row}), flush=True)
        if args.es_cases:
            second_moments(model, layers, n_samples=hparams.mom2_n_samples)
            report["edit_quality"] = {dtype: edit_quality(model, cases[: args.es_cases], dtype)
                                      for dtype in ("float32", "bfloat16")}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
