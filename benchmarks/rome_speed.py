"""ROME's speed on one model: time per edit and its parts, against whole-row value searches.

The baseline is the workbench's previous implementation, written out below in the structure of
ROME's reference code (Meng et al. 2022, ``compute_v``): context prefixes sampled by whole forward
passes for every edit, the key k* read in a separate pass, and every step of the search for delta
running the whole prefixed rows and unembedding every position. The current implementation
(:mod:`workbench.edit.targets`) runs the context before the subject's last token once, unembeds only
the positions the loss reads, reads k* in the search's first step and samples the prefixes once per
weights with the KV cache. Both use the same requests, layer, statistics (cached beforehand) and
settings, and take the same number of steps; they run alternately in this process, so machine load
affects both alike, and the ratios are what is reported: at the same (the record's tuned) settings,
and against the previous implementation at the previous defaults (10 prefixes, v_lr 0.5, stop 0.05).

    python benchmarks/rome_speed.py [--model smollm2-135m] [--edits 5] [--stats-samples 100,1000,all]

``--stats-samples`` adds the statistics rate and ROME's Score with C estimated from that many
corpus texts (slow: a bench run per setting). ``--bench-cases N`` times ``run_bench`` on N tuning
cases, each edited alone, with the cases' value searches run as one batch (what ``run_bench`` does,
:func:`workbench.edit.rome.searching_together`) against one search per case, alternately, twice each.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from statistics import mean

import torch

import workbench
from workbench import families
from workbench.edit import contexts
from workbench.edit.api import EDITORS, edit
from workbench.edit.layers import default_edit_layer
from workbench.edit.rome import RomeHyperParams, rank_one_update
from workbench.edit.stats import accumulate_second_moment, second_moment, statistics_fingerprint, using_corpus
from workbench.edit.targets import ValueSearch, optimise_value_deltas
from workbench.errors import InvalidRequestError
from workbench.evaluate.bench import run_bench
from workbench.models import frozen_weights, record_of
from workbench.state import state_of
from workbench.tokens import pad_right, target_ids


@torch.no_grad()
def whole_pass_prefixes(model, spec, seed) -> list[str]:
    """Prefixes sampled with one whole forward pass per new token, as the reference does."""
    generator, templates = torch.Generator().manual_seed(seed), ["{}"]
    for length, count in spec:
        ids = torch.full((count, 1), model.tokenizer.bos_token_id, dtype=torch.long)
        for _ in range(length):
            top = model(ids, return_type="logits")[:, -1].float().topk(5, dim=-1)
            choice = torch.multinomial(top.values.softmax(-1), 1, generator=generator)
            ids = torch.cat([ids, top.indices.gather(1, choice)], dim=1)
        templates += [model.tokenizer.decode(row[1:], skip_special_tokens=True).strip() + ". {}" for row in ids]
    return templates


def whole_row_edit(model, layer, request, templates, search: ValueSearch, moment) -> tuple[torch.Tensor, int]:
    """The rank-one update of the previous implementation and its number of search steps."""
    rows = contexts.context_rows(model, [request], templates)
    key = contexts.mean_keys(model, layer, [request], templates)[0]
    target = target_ids(model, request.target_new)
    essence = contexts.context_rows(model, [type(request)("{} is a", request.subject, request.target_new)], ["{}"])
    input_ids = pad_right([row + target[:-1] for row in rows.rows] + essence.rows, model.tokenizer.pad_token_id)
    positions = torch.tensor(rows.subject_last + essence.subject_last)
    n_rows, hook = len(rows.rows), families.Hooks.mlp_out(layer)
    essence_last = len(essence.rows[0]) - 1
    with torch.no_grad():
        logits, cache = model.run_with_cache(input_ids, names_filter=lambda name: name == hook)
        original = cache[hook][0, positions[0]].float()
        reference = logits[n_rows, essence_last].float().log_softmax(-1)
    delta = torch.zeros_like(original, requires_grad=True)
    optimiser = torch.optim.Adam([delta], lr=search.lr)

    def add(activation, hook=None):
        activation[torch.arange(len(positions)), positions] += delta.to(activation.dtype)
        return activation

    for step in range(search.steps):
        logits = model.run_with_hooks(input_ids, return_type="logits", fwd_hooks=[(hook, add)]).float()
        nll = -torch.stack([logits[r, len(row) - 1 + k].log_softmax(-1)[t] for r, row in enumerate(rows.rows)
                            for k, t in enumerate(target)]).mean()
        if nll.item() < search.stop_loss or step == search.steps - 1:
            break
        edited = logits[n_rows, essence_last].log_softmax(-1)
        kl = torch.nn.functional.kl_div(reference, edited, log_target=True, reduction="sum")
        loss = nll + search.kl_factor * kl + search.weight_decay * delta.norm() / original.norm() ** 2
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        with torch.no_grad():
            delta.mul_((search.clamp_norm_factor * original.norm() / delta.norm()).clamp(max=1.0))
    projection = families.mlp_out_projection(model, layer)
    return rank_one_update(projection.matrix().detach(), key, delta.detach(), moment), step + 1


def timed(function, *args, **kwargs):
    started = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - started


def speed(model, record, layer: int, n_edits: int) -> dict:
    """Per edit: the whole-row implementation with the workbench's previous default settings and with
    the model's tuned ones, and the current implementation (tuned settings) in parts and in all."""
    tuned = RomeHyperParams(**{k: v for k, v in record.editor_settings.get("rome", {}).items() if k != "layer"})
    previous = RomeHyperParams(mom2_n_samples=tuned.mom2_n_samples)  # the paper-style defaults
    requests = [case.requested_rewrite for case in record.benchmark(n_edits, split="tuning")]
    moment = second_moment(model, layer, n_samples=tuned.mom2_n_samples)  # cached before timing
    seconds = {"whole_rows_previous_settings": [], "whole_rows_tuned_settings": [], "current": []}
    parts = {"fingerprint": [], "prefixes": [], "search": [], "update": []}
    steps = []
    with frozen_weights(model):
        for request in requests:
            baseline_steps = []
            for name, hparams in (("whole_rows_previous_settings", previous), ("whole_rows_tuned_settings", tuned)):
                started = time.perf_counter()
                templates = whole_pass_prefixes(model, hparams.prefixes, hparams.seed)
                baseline_steps.append(whole_row_edit(model, layer, request, templates, hparams.value_search(), moment)[1])
                seconds[name].append(time.perf_counter() - started)

            state_of(model).prefixes.clear()  # the first edit of a process samples them; later ones reuse them
            _, parts_fingerprint = timed(statistics_fingerprint, model)
            templates, parts_prefixes = timed(contexts.sample_prefixes, model, tuned.prefixes, tuned.seed)
            found, parts_search = timed(optimise_value_deltas, model, families.Hooks.mlp_out(layer), [request],
                                        templates, tuned.value_search(), read_hook=families.Hooks.mlp_key(layer))
            projection = families.mlp_out_projection(model, layer)
            _, parts_update = timed(rank_one_update, projection.matrix().detach(), found.read[0], found.deltas[0],
                                    moment)
            for name, value in zip(parts, (parts_fingerprint, parts_prefixes, parts_search, parts_update)):
                parts[name].append(value)
            steps.append({"whole_rows_previous": baseline_steps[0], "whole_rows_tuned": baseline_steps[1],
                          "current": found.steps[0]})
    for request in requests:  # whole edits through the entry point (validation included)
        result, elapsed = timed(edit, model, request, "rome", layer=layer)
        result.restore()
        seconds["current"].append(elapsed)
    per_edit = {name: mean(values) for name, values in seconds.items()}
    return {
        "edits": n_edits,
        "layer": layer,
        "seconds_per_edit": {name: round(value, 2) for name, value in per_edit.items()},
        "ratio_same_settings": round(per_edit["whole_rows_tuned_settings"] / per_edit["current"], 2),
        "ratio_to_previous_defaults": round(per_edit["whole_rows_previous_settings"] / per_edit["current"], 2),
        "current_parts_seconds": {name: round(mean(values), 3) for name, values in parts.items()},
        "steps": steps,
        "threads": torch.get_num_threads(),
    }


def statistics_quality(model, record, layer: int, settings: str) -> dict:
    """The statistics rate, and ROME's Score on tuning cases with C from fewer corpus texts."""
    _, tokens = accumulate_second_moment(model, layer, list(record.corpus_texts()), progress=False)
    report, cases = {}, record.benchmark(20, split="tuning")
    for setting in settings.split(","):
        n_samples = None if setting == "all" else int(setting)
        try:
            result = run_bench(model, cases, "rome", layer=layer, fluency_tokens=0, progress=False,
                               mom2_n_samples=n_samples)
        except InvalidRequestError as error:  # fewer independent keys than the MLP is wide
            report[setting] = {"error": str(error)}
            continue
        report[setting] = {k: round(result.after[k], 2) for k in ("efficacy_score", "paraphrase_score",
                                                                   "neighborhood_score", "score")}
    return {"stats_tokens": tokens, "quality_by_stats_samples": report}


def bench_speed(model, record, layer: int, n_cases: int) -> dict:
    """run_bench's seconds on ``n_cases`` tuning cases with the searches batched and one per case, and
    the scores of each (the same up to rounding)."""
    cases = record.benchmark(n_cases, split="tuning")
    batched = EDITORS["rome"]
    alone = dataclasses.replace(batched, independent_edits=None)
    seconds, scores = {"one_search_per_case": [], "searched_together": []}, {}
    for name in ["one_search_per_case", "searched_together"] * 2:
        EDITORS["rome"] = alone if name == "one_search_per_case" else batched
        try:
            result, elapsed = timed(run_bench, model, cases, "rome", layer=layer, fluency_tokens=0,
                                    free_generation=False, progress=False)
        finally:
            EDITORS["rome"] = batched
        seconds[name].append(round(elapsed, 1))
        scores[name] = {k: round(result.after[k], 2) for k in ("efficacy_score", "paraphrase_score",
                                                               "neighborhood_score", "score")}
    return {"bench_cases": n_cases, "bench_seconds": seconds, "bench_scores": scores,
            "bench_ratio": round(mean(seconds["one_search_per_case"]) / mean(seconds["searched_together"]), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--stats-samples", default="", help="e.g. 100,1000,all (slow)")
    parser.add_argument("--bench-cases", type=int, default=0, help="also time run_bench on this many tuning cases")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    record = record_of(model)
    layer = record.editor_settings.get("rome", {}).get("layer")
    if layer is None:
        layer = default_edit_layer(model, record.known_facts(48))
    with using_corpus(record.corpus_texts(), record.corpus):
        report = {"model": args.model, **speed(model, record, layer, args.edits)}
        if args.bench_cases:
            report.update(bench_speed(model, record, layer, args.bench_cases))
        if args.stats_samples:
            report.update(statistics_quality(model, record, layer, args.stats_samples))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
