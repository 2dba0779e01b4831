"""Tuning an editor's settings for a bundled model, on its benchmark's tuning split only.

Three measurements, each written under its own key of ``<record folder>/tuning.json`` (the record's
``settings_note`` cites them):

- ``grid``: the bench runner (each case edited on its own) on the tuning split for every
  combination of the given hyper-parameter values, at one layer;
- ``layers``: the same for every candidate layer (:func:`workbench.evaluate.layer_sweep.sweep_edit_layers`);
- ``trace``: the average indirect effect of MLP outputs per layer on the record's known facts
  (causal tracing with the paper's window of 10), the other way to choose the edit layer.

    python -m workbench.zoo.tuning grid --model smollm2-135m --method rome --layer 4 --cases 16 \\
        --values v_lr=0.5,1,2 --values "prefixes=[],[[5,2],[10,2]]"
    python -m workbench.zoo.tuning layers --model smollm2-135m --layers 0-26:2 --cases 20
    python -m workbench.zoo.tuning trace --model smollm2-135m --facts 48

The evaluation split is never read here.
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from workbench.zoo.records import RECORDS, ModelRecord

REPORTED = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score", "fluency", "search_steps")


def tuning_file(record: ModelRecord) -> Path:
    """Where the record's tuning measurements are kept."""
    return record.folder / "tuning.json"


def save_measurement(record: ModelRecord, key: str, value) -> None:
    """Write ``value`` under ``key`` of the record's tuning file, keeping the other keys."""
    path = tuning_file(record)
    data = json.loads(path.read_text()) if path.is_file() else {}
    data[key] = value
    path.write_text(json.dumps(data, indent=1) + "\n")


def append_grid(record: ModelRecord, method: str, grid: dict) -> None:
    """Add one grid run to ``grid-<method>``'s list of grids in the record's tuning file: grids
    accumulate (each keeps its command), unlike the sweep and the trace, which a new run replaces."""
    path = tuning_file(record)
    data = json.loads(path.read_text()) if path.is_file() else {}
    key = f"grid-{method}"
    data[key] = {**data.get(key, {}), "method": method, "split": "tuning",
                 "grids": [*data.get(key, {}).get("grids", []), grid]}
    path.write_text(json.dumps(data, indent=1) + "\n")


def parse_values(items: Sequence[str]) -> dict[str, list]:
    """``["v_lr=0.5,1", "prefixes=[],[[5,2]]"]`` -> ``{"v_lr": [0.5, 1], "prefixes": [[], [[5, 2]]]}``:
    the values after ``=`` are read as the items of a JSON list."""
    grid = {}
    for item in items:
        name, _, values = item.partition("=")
        try:
            grid[name] = json.loads(f"[{values}]")
        except json.JSONDecodeError:
            grid[name] = []
        if not name or not grid[name]:
            raise SystemExit(f"--values takes name=v1,v2,... with JSON values; got {item!r}")
    return grid


def parse_layers(text: str) -> list[int]:
    """``"0-26:2"`` -> 0, 2, ..., 26; ``"3,5,8"`` -> those."""
    if "-" in text:
        span, _, step = text.partition(":")
        first, last = map(int, span.split("-"))
        return list(range(first, last + 1, int(step or 1)))
    return [int(v) for v in text.split(",")]


def run_grid(model_name: str, method: str, layer: int | None, n_cases: int, grid: Mapping[str, list],
             fluency_tokens: int, batch: bool = False) -> list[dict]:
    """For every combination in ``grid``, the first ``n_cases`` tuning cases edited each on its own
    (the bench runner) or, with ``batch``, all in one call (the scaling runner, as MEMIT is used)."""
    import workbench
    from workbench.evaluate.bench import run_bench
    from workbench.evaluate.scaling import run_scaling

    model = workbench.load_model(model_name)
    cases = RECORDS[model_name].benchmark(n_cases, split="tuning")
    rows = []
    for combination in itertools.product(*grid.values()):
        settings = dict(zip(grid, combination))
        if batch:
            hparams = {method: {**settings, **({"layer": layer} if layer is not None else {})}}
            run = run_scaling(model, cases, [method], [len(cases)], fluency_tokens=fluency_tokens, progress=False,
                              hparams=hparams).runs[0]
            before, after, seconds = run["before"], run["after"], run["edit_seconds"]
            in_effect = run["hparams_in_effect"]
        else:
            result = run_bench(model, cases, method, layer=layer, fluency_tokens=fluency_tokens, progress=False,
                               **settings)
            before, after, seconds = result.before, result.after, result.edit_seconds
            in_effect = result.settings["hparams_in_effect"]
        row = {"settings": settings, "in_effect": in_effect, "edit_seconds": round(seconds, 2),
               **{k: round(after[k], 2) for k in REPORTED if k in after},
               "unedited": {k: round(before[k], 2) for k in REPORTED if k in before}}
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workbench.zoo.tuning", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("grid", "layers", "trace"):
        command = commands.add_parser(name)
        command.add_argument("--model", default="smollm2-135m", choices=sorted(RECORDS))
        command.add_argument("--save", action="store_true", help="write the result into the record's tuning.json")
    grid = commands.choices["grid"]
    grid.add_argument("--method", default="rome")
    grid.add_argument("--layer", type=int)
    grid.add_argument("--cases", type=int, default=16)
    grid.add_argument("--values", action="append", default=[], help="name=v1,v2 (repeat for more settings)")
    grid.add_argument("--fluency-tokens", type=int, default=0)
    grid.add_argument("--batch", action="store_true", help="all cases in one edit (MEMIT) instead of one by one")
    layers = commands.choices["layers"]
    layers.add_argument("--method", default="rome")
    layers.add_argument("--layers", default="0-26:2")
    layers.add_argument("--cases", type=int, default=20)
    trace = commands.choices["trace"]
    trace.add_argument("--facts", type=int, default=48)
    trace.add_argument("--window", type=int, help="default: the one default_edit_layer uses (10 on 20+ layers)")
    trace.add_argument("--samples", type=int, default=5)
    args = parser.parse_args(argv)
    record = RECORDS[args.model]
    started = time.perf_counter()
    if args.command == "grid":
        n_cases = len(record.benchmark(args.cases, split="tuning"))  # fewer than asked where the split ends
        result = {"command": "python -m workbench.zoo.tuning " + " ".join(shlex.quote(a) for a in argv or sys.argv[1:]
                                                                        if a != "--save"),
                  "layer": args.layer, "cases": n_cases, "batch": args.batch,
                  "rows": run_grid(args.model, args.method, args.layer, args.cases, parse_values(args.values),
                                   args.fluency_tokens, args.batch)}
    elif args.command == "layers":
        import workbench
        from workbench.edit.stats import second_moments, using_corpus
        from workbench.evaluate.layer_sweep import sweep_edit_layers

        model = workbench.load_model(args.model)
        layers = parse_layers(args.layers)
        with using_corpus(record.corpus_texts(), record.corpus):  # all layers' statistics in one pass
            second_moments(model, layers, n_samples=record.editor_settings.get(args.method, {}).get("mom2_n_samples"))
        sweep = sweep_edit_layers(model, record.benchmark(args.cases, split="tuning"), layers,
                                  args.method)
        print(sweep.table())
        result = {**dataclasses.asdict(sweep), "best_layer": sweep.best_layer,
                  "settings": {k: v for k, v in record.editor_settings.get(args.method, {}).items() if k != "layer"}}
    else:
        import workbench
        from workbench.edit.layers import tracing_window
        from workbench.locate.effects import LAST_SUBJECT, trace_many

        model = workbench.load_model(args.model)
        args.window = args.window or tracing_window(model)
        effect = trace_many(model, record.known_facts(args.facts), kinds=["mlp"], samples=args.samples,
                            window=args.window)
        result = {"facts": effect.n_facts, "window": args.window, "samples": args.samples,
                  "recommended_layer": effect.recommend_layer(), "mlp_effect_at_subject_last": [round(float(v), 5) for v in effect.effects["mlp"][LAST_SUBJECT]]}
        print(json.dumps(result, indent=1))
    result["seconds"] = round(time.perf_counter() - started, 1)
    if args.save and args.command == "grid":
        append_grid(record, args.method, result)
    elif args.save:
        save_measurement(record, args.command, result)


if __name__ == "__main__":
    main()
