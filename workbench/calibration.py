"""``workbench calibrate``: measure a model's settings from nothing but the model.

A user's own model arrives with no known facts, no benchmark, no edit layer and no editor
hyper-parameters; hand-tuning them is what EasyEdit users ask about most ("which layer?", "which
hyper-parameters for my model?"). :func:`calibrate` measures each, in order, and writes them as
a checksummed settings folder bound to the weights (:mod:`workbench.settings`), which
:func:`workbench.load_model` then applies by default:

1. **Prompt convention**: which token to start prompts with (nothing, the tokenizer's BOS, its
   EOS): the one under which the model answers most facts of a sample of the knowledge base
   (teacher-forced top-1 of the object's first token, every template).
2. **Known facts and benchmark**: the facts of the bundled real-facts knowledge base (or the
   user's) the model answers under every template of their relation, and a CounterFact-style
   benchmark of them (:func:`workbench.zoo.cases.build_benchmark`); one case in five is the
   tuning split, on which everything below is chosen; the evaluation split is never read here.
   A bundled record that ships facts and a benchmark measured under the prefix found in step 1
   (smollm2-135m) is calibrated on those instead, so that its evaluation split stays unseen.
3. **Edit layer**, two ways (Hase et al. 2023 found they often disagree; both are reported, the
   sweep decides): the causal-tracing peak of the MLP indirect effect at the last subject token
   (Meng et al. 2022) on known facts, and a ROME sweep over evenly spaced layers plus that peak on
   tuning cases, each edited alone, scored by CounterFact's Score (statistics over
   :data:`SWEEP_SAMPLES` texts of the bundled Wikipedia leads).
4. **Statistics sample size**: C = E[k k^T] over the first n texts of the bundled Wikipedia leads,
   n doubled until ROME's update direction C^-1 k for the known subjects' keys stops moving
   (mean cosine between successive estimates at least :data:`CONVERGED` at every layer MEMIT
   edits, those ending at the chosen layer).
5. **Editor hyper-parameters**: small grids on the tuning split, scored by Score: ROME's bound on
   its value change at the chosen layer, tightened while Score rises (:data:`ROME_BOUNDS`;
   :data:`ROME_CASES` cases, each edited alone, searched without context prefixes);
   MEMIT's lambda, then one or two passes at the better lambda, over the layers ending there
   (tuning cases in one batch, as MEMIT is used; targets searched without context prefixes,
   :data:`MASS_EDIT_SEARCH`); AlphaEdit's l2 term at MEMIT's search setting.

The grids are the same for every model and are written into the settings file with every score.
The sweep and the grids edit the same unedited model many times: its metrics are measured once per
case (:func:`workbench.evaluate.metrics.remembering_unedited_metrics`), and grid points that differ
only in how the targets are written (MEMIT's lambda, AlphaEdit's l2 term) search the targets once
(:func:`workbench.edit.targets.remembering_searches`); both give what measuring anew gives.

By default every grid point runs, so the settings chosen do not depend on the machine's speed. An
optional time budget (``budget_seconds``, counted from the start) is checked before each grid point
but the first of its grid: a point runs only if the time of the grid's last point (doubled for two
MEMIT passes) still ends within it; that overestimates a point whose search is remembered. Points
left out are recorded as skipped, with the prediction, and the best point measured is kept. The
stages before the grids always run, so a budget below their time is overrun by them and by each
grid's first point; on a slow CPU a budget can then keep a much worse setting (smollm2-135m's MEMIT
lambda of 3,000, Score 96.7 against 78.2 at 15,000, was once skipped at 900 s).

Limits: the knowledge base holds English geography, languages, nationality, occupations and
companies; a model that knows fewer than :data:`MIN_KNOWN_FACTS` of them needs the user's facts
(``facts=``). Scores on a few tuning cases are noisy (one case of 8 is 12.5 points of ES); the
grids are coarse by design, to fit a CPU budget.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.data import EditRequest, Fact, write_counterfact
from workbench.edit.contexts import mean_keys
from workbench.edit.layers import tracing_window
from workbench.edit.stats import growing_second_moments, second_moments, using_corpus, weights_fingerprint
from workbench.edit.targets import remembering_searches
from workbench.errors import InvalidRequestError, TooFewKnownFactsError
from workbench.evaluate.bench import run_bench
from workbench.evaluate.metrics import remembering_unedited_metrics
from workbench.evaluate.scaling import run_scaling
from workbench.locate.effects import LAST_SUBJECT, trace_many
from workbench.models import RECORD_KEY, cache_root, load_model, record_of, set_prompt_prefix
from workbench.settings import CalibratedSettings, read_settings, settings_directory, write_settings
from workbench.zoo.cases import build_benchmark, first_tokens
from workbench.zoo.build_real_knowledge import REAL_FACTS_PATH
from workbench.zoo.corpora import CORPORA
from workbench.zoo.knowledge import facts_by_relation, load_facts
from workbench.zoo.records import RECORDS, TUNING_EVERY, ModelRecord
from workbench.zoo.recall import measure_recall
from workbench.zoo.relations import RELATIONS, Relation
from workbench.zoo.recall import TrainingFact

CORPUS = "wikipedia-vital-leads"
MIN_KNOWN_FACTS = 20
PREFIX_SAMPLE = 20
"""Facts per relation (spread evenly) on which the prompt conventions are compared."""
MAX_PER_RELATION = 300
"""Candidate facts per relation (spread evenly): recall over all 4,292 facts of the knowledge base
costs minutes on a CPU, and a few hundred known facts make a benchmark large enough."""
SAMPLE_SIZES = (250, 500, 1000, 2000)
"""Corpus sample sizes tried, doubling; the largest is taken when none converges (gemma3-270m's first
calibration went on to 4,000 texts, 0.978, for 150 s more than its 15-minute goal allows)."""
CONVERGED = 0.99
SWEEP_SAMPLES = 500
"""Corpus texts for the statistics of the layer sweep (its many layers make a full sample dear);
the sample size of the chosen layers is then measured by convergence."""
TRACE_FACTS, TRACE_SAMPLES = 12, 3
SWEEP_LAYERS = 5
"""Evenly spaced candidate layers of the ROME sweep (the tracing peak is added)."""
SWEEP_CASES = 6
ROME_CASES = 24
"""Tuning cases of ROME's grid, each edited alone (their searches run as one batch). Six, as in the sweep,
were too few: on gemma3-270m they preferred the paper's context prefixes by one neighbourhood prompt
(Score 99.4 against 98.3), and on 50 evaluation cases the prefixes then gave ES / PS / NS 96.0 / 92.0 / 95.4
against 98.0 / 90.0 / 96.8 without them."""
ROME_SEARCH = {"prefixes": ()}
"""ROME's sweep and grid search each value without context prefixes. The paper's prefixes (11 search rows
per edit instead of one, the dearest grid point) were a grid point until they had lost on both models at
every measurement: gemma3-270m 24 tuning cases Score 94.3 against 95.3 at the same bound, 190 s of its
825-s calibration; smollm2-135m 6 cases 87.4 against 97.1."""
ROME_BOUNDS = (4.0, 1.0, 0.5, 0.25, 0.125)
"""ROME's bound on the value change, ||delta|| <= bound * ||v||: the paper's 4 (the sweep's), then tighter
bounds in turn while Score rises (the search stops at the first that scores no better than the best so far).
On gemma3-270m's 24 tuning cases at layer 0 the paper's bound let edits reach neighbours: NS 87.9, 94.6,
96.3, 97.9, 99.6 at 4, 1, 0.75, 0.5, 0.25, with ES and PS held until 0.5 (Score 92.9 / 95.3 / 95.9 / 96.4)
and falling at 0.25 (ES / PS 95.8 / 77.1, Score 89.7)."""
MEMIT_SPAN = 5
"""Layers MEMIT edits, ending at the chosen layer where it can (the MEMIT paper edits 5 layers of GPT-J)."""
MEMIT_CASES = 24
MASS_EDIT_SEARCH = {"prefixes": ()}
"""MEMIT and AlphaEdit search their targets without context prefixes, whatever ROME's grid chose: on
gemma3-270m's 24 tuning cases in one batch, the paper's prefixes (which ROME's grid had chosen there, 99.4
against 98.3 on 6 cases) gave MEMIT Score 79.8 at lambda 15,000 against 93.3 without, at 11 search rows per
request instead of one (263 s for the point on 2 cores)."""
MEMIT_LAMBDAS = ({"mom2_update_weight": 15000.0}, {"mom2_update_weight": 3000.0})
"""The paper's lambda (15,000) and a lighter one, with the paper's single pass."""
MEMIT_PASSES = {"passes": 2, "stop_on": "target", "stop_loss": 0.69}
"""Then, at the better lambda: two passes, each target searched until the whole target is more likely
than not (ln 2), the second on the edited model."""
ALPHAEDIT_GRID = ({"l2": 10.0}, {"l2": 1.0})


@dataclass
class _Budget:
    """The calibration's time budget, counted from its start. A grid point but the first of its grid
    runs only if it is predicted to end within the budget: its predicted time is the last measured
    point of the same grid times the point's relative cost (two MEMIT passes cost about two)."""

    seconds: float | None
    """None: no budget, every point runs."""
    started: float
    last_point: dict[str, float] = field(default_factory=dict)
    """grid name -> seconds its last measured point took."""

    def spent(self) -> float:
        return time.perf_counter() - self.started

    def refusal(self, grid: str, cost: float, first: bool) -> str | None:
        """Why the point may not run, or None when it may."""
        predicted = self.last_point.get(grid, 0.0) * cost
        if first or self.seconds is None or self.spent() + predicted <= self.seconds:
            return None
        return (f"time budget: predicted to end at {self.spent() + predicted:.0f} s "
                f"(this grid's last point took {self.last_point[grid]:.0f} s), past {self.seconds:.0f} s")

    @contextlib.contextmanager
    def timing(self, grid: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.last_point[grid] = time.perf_counter() - started


def calibrate(
    model: TransformerBridge | str | os.PathLike,
    *,
    facts: str | os.PathLike | None = None,
    budget_seconds: float | None = None,
    output: str | os.PathLike | None = None,
    progress: bool = True,
) -> CalibratedSettings:
    """Measure ``model``'s settings (see the module docstring) and write them; returns them.

    Args:
        model: a loaded model, or anything :func:`workbench.load_model` takes (loaded without
            settings, so a calibration never starts from an earlier one's).
        facts: a JSONL facts file (``subject``, ``relation_id``, ``object``, relation ids of
            :data:`workbench.zoo.relations.RELATIONS`) instead of the bundled real-facts knowledge base.
        budget_seconds: time the calibration may take (default: no limit, every grid point runs); grid
            points predicted to end after it are skipped and reported (the stages before the grids, and
            each grid's first point, always run).
        output: the settings folder (default: ``$WORKBENCH_CACHE/settings/<weights sha256>``, where
            ``load_model`` finds it).

    Raises:
        TooFewKnownFactsError: the model answers fewer than :data:`MIN_KNOWN_FACTS` facts.
    """
    if not isinstance(model, TransformerBridge):
        model = load_model(model, settings=False)
    started = time.perf_counter()
    fingerprint = weights_fingerprint(model)
    target = Path(output) if output is not None else settings_directory(cache_root() / "settings", fingerprint)
    bundled = RECORDS.get(getattr(model.original_model.config, RECORD_KEY, None))
    relations = bundled.relations() if bundled else dict(RELATIONS)
    with tempfile.TemporaryDirectory(prefix="workbench-calibration-") as work, _in_progress(model, Path(work)) as state, \
            _Stages(state, progress) as stage:
        state["model"] = {"source": str(model.original_model.name_or_path), "family": families.family_of(model).name,
                          "n_layers": families.n_layers(model), "bundled_record": bundled.name if bundled else None}
        state["templates"] = {rid: list(r.templates) for rid, r in relations.items() if bundled and rid in bundled.templates}
        candidates = _candidate_facts(facts, relations)
        with stage("prompt convention"):
            state["prompt"] = _prompt_convention(model, candidates, relations, progress)
            set_prompt_prefix(model, state["prompt"]["prefix"])
        with stage("known facts"):
            if facts is None and _ships_benchmark(bundled, state["prompt"]["prefix"]):
                known, cases = bundled.facts(), bundled.benchmark()
                source = f"the bundled record {bundled.name}'s known facts and benchmark"
            else:
                known = _known_facts(model, candidates, relations, progress)
                cases = build_benchmark(candidates, {(f.subject, f.relation_id) for f in known},
                                        first_tokens(model.tokenizer, candidates), relations=relations)
                _write_facts(Path(work), known, cases)
                source = str(facts) if facts else "bundled real-facts knowledge base"
            state["facts"] = _fact_summary(candidates, known, cases, source)
        tuning = record_of(model).benchmark(split="tuning")
        # the sweep and the grids edit the same unedited model again and again: its metrics are measured once per
        # case, and a search repeated with the same settings (MEMIT's lambda, AlphaEdit's l2) runs once
        with remembering_unedited_metrics(model), remembering_searches(model):
            with stage("tracing"):
                state["layers"] = {"tracing": _tracing_peak(model, record_of(model).known_facts(TRACE_FACTS), progress)}
            with stage("edit layer"):
                sweep_layers = _sweep_layers(model, state["layers"]["tracing"]["peak"])
                state["layers"]["sweep"] = _rome_sweep(model, tuning[:SWEEP_CASES], sweep_layers, progress)
                layer = state["layers"]["sweep"]["best_layer"]
            with stage("statistics"):
                state["statistics"] = {"corpus": CORPUS,
                                       **_sample_size(model, _memit_layers(model, layer), known, progress)}
            with stage("editor settings"):
                state["editors"] = _editor_settings(model, tuning, layer, state["statistics"]["n_samples"],
                                                    _Budget(budget_seconds, started), state)
        state["seconds"] = round(time.perf_counter() - started, 1)
        files = {name: (Path(work) / name).read_text(encoding="utf-8") for name in ("known_facts.jsonl", "counterfact.json")
                 if (Path(work) / name).is_file()}
        content = {"weights_sha256": fingerprint, **state}
    write_settings(target, content, files)
    model.workbench_settings = read_settings(target, fingerprint)
    return model.workbench_settings


class _Stages:
    """A progress bar over the calibration's stages, and each stage's seconds in ``state["stage_seconds"]``."""

    COUNT = 6

    def __init__(self, state: dict[str, Any], progress: bool) -> None:
        self.state, self.progress = state, progress
        state["stage_seconds"] = {}

    def __enter__(self) -> _Stages:
        self.bar = tqdm(total=self.COUNT, desc="calibrate", unit="stage", disable=not self.progress)
        return self

    def __exit__(self, *exc) -> None:
        self.bar.close()

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.bar.set_postfix_str(name)
        started = time.perf_counter()
        yield
        self.state["stage_seconds"][name] = round(time.perf_counter() - started, 1)
        self.bar.update()


@contextlib.contextmanager
def _in_progress(model: TransformerBridge, work: Path) -> Iterator[dict[str, Any]]:
    """While calibrating, the model's record is the one being measured (its folder ``work``), so the
    entry points it calls (``workbench.edit``, the benchmark) see the settings chosen so far and none
    from elsewhere; the model's own settings and tokenizer come back afterwards on failure."""
    saved, tokenizer = getattr(model, "workbench_settings", None), model.tokenizer
    state: dict[str, Any] = {"prompt": {"prefix": None}, "statistics": {"corpus": CORPUS}, "editors": {}}
    model.workbench_settings = CalibratedSettings(work, state)
    try:
        yield state
    except BaseException:
        model.workbench_settings, model.tokenizer = saved, tokenizer
        raise


def _candidate_facts(path: str | os.PathLike | None, relations: dict[str, Relation]) -> list[Fact]:
    facts = _spread(load_facts(path if path is not None else REAL_FACTS_PATH), MAX_PER_RELATION)
    unknown = sorted({f.relation_id for f in facts} - set(relations))
    if unknown:
        raise InvalidRequestError(f"facts of relations {unknown} have no prompt templates; use relation ids of "
                                  f"workbench.zoo.relations.RELATIONS ({', '.join(sorted(relations))})")
    return facts


def _spread(facts: list[Fact], per_relation: int) -> list[Fact]:
    """At most ``per_relation`` facts of each relation, every k-th (deterministic)."""
    return [f for group in facts_by_relation(facts).values()
            for f in group[:: max(1, len(group) // per_relation)][:per_relation]]


def _prompt_convention(model: TransformerBridge, facts: list[Fact], relations: dict[str, Relation],
                       progress: bool) -> dict[str, Any]:
    """The prefix token under which the model answers most of a sample of facts (ties: the earlier
    candidate of nothing, BOS, EOS)."""
    tokenizer = model.tokenizer
    candidates = {"nothing": None}
    for token in (tokenizer.bos_token, tokenizer.eos_token):
        if token is not None and token not in candidates.values():
            candidates[token] = token
    sample = _spread(facts, PREFIX_SAMPLE)
    items = [TrainingFact(f, relations[f.relation_id].templates) for f in sample]
    recall = {}
    for label, token in candidates.items():
        prefix = [] if token is None else [tokenizer.convert_tokens_to_ids(token)]
        report = measure_recall(model.original_model, tokenizer, items, batch_size=32, progress=progress, prefix=prefix)
        recall[label] = round(report.overall.first_token, 4)
    best = max(candidates, key=lambda label: recall[label])  # the first among ties
    return {"prefix": candidates[best], "first_token_recall": recall, "facts": len(sample),
            "prompts": sum(len(item.templates) for item in items)}


def _known_facts(model: TransformerBridge, facts: list[Fact], relations: dict[str, Relation],
                 progress: bool) -> list[Fact]:
    """Facts whose object's first token is top-1 under the rewrite template, then under every other."""
    tokenizer = model.tokenizer
    prefix = [tokenizer.bos_token_id] if tokenizer.add_bos_token else []

    def recalled(items: list[TrainingFact]) -> frozenset:
        return measure_recall(model.original_model, tokenizer, items, batch_size=32, progress=progress,
                              prefix=prefix).recalled

    first = recalled([TrainingFact(f, relations[f.relation_id].templates[:1]) for f in facts])
    passed = [f for f in facts if (f.subject, f.relation_id) in first]
    rest = recalled([TrainingFact(f, relations[f.relation_id].templates[1:]) for f in passed
                     if len(relations[f.relation_id].templates) > 1]) if passed else frozenset()
    known = [f for f in passed if len(relations[f.relation_id].templates) == 1 or (f.subject, f.relation_id) in rest]
    if len(known) < MIN_KNOWN_FACTS:
        raise TooFewKnownFactsError(
            f"the model answers {len(known)} of {len(facts)} facts of the knowledge base under every template (at least "
            f"{MIN_KNOWN_FACTS} are needed to calibrate and benchmark it); pass facts it knows as a JSONL file "
            "(subject, relation_id, object per line): workbench calibrate MODEL --facts FILE")
    return known


def _write_facts(folder: Path, known: list[Fact], cases) -> None:
    (folder / "known_facts.jsonl").write_text("".join(
        json.dumps({"subject": f.subject, "relation_id": f.relation_id, "object": f.object}, ensure_ascii=False) + "\n"
        for f in known), encoding="utf-8")
    write_counterfact(cases, folder / "counterfact.json")


def _ships_benchmark(bundled: ModelRecord | None, prefix: str | None) -> bool:
    """Whether a bundled record ships known facts and a benchmark measured under the prefix calibration
    found: then they are used (their tuning split keeps the record's evaluation split unseen)."""
    return (bundled is not None and bundled.prefix == prefix and (bundled.folder / bundled.facts_file).is_file()
            and (bundled.folder / bundled.benchmark_file).is_file())


def _fact_summary(candidates: list[Fact], known: list[Fact], cases, source: str) -> dict[str, Any]:
    count = lambda items: dict(sorted(Counter(items).items()))  # noqa: E731
    tuning = sum(case.case_id % TUNING_EVERY == 0 for case in cases)
    return {"source": source, "candidates": len(candidates),
            "known": len(known), "known_by_relation": count(f.relation_id for f in known),
            "benchmark_cases": len(cases), "tuning_cases": tuning, "evaluation_cases": len(cases) - tuning}


def _tracing_peak(model: TransformerBridge, facts: Sequence[tuple[str, str, str]], progress: bool) -> dict[str, Any]:
    """The layer whose MLP output has the largest average indirect effect at the last subject token."""
    window = tracing_window(model)
    effect = trace_many(model, facts, kinds=["mlp"], samples=TRACE_SAMPLES, window=window, progress=progress)
    return {"peak": effect.recommend_layer(), "facts": effect.n_facts, "window": window, "samples": TRACE_SAMPLES,
            "mlp_effect_at_last_subject_token": [round(float(v), 5) for v in effect.effects["mlp"][LAST_SUBJECT]]}


def _sweep_layers(model: TransformerBridge, peak: int) -> list[int]:
    """Evenly spaced layers from 0 to the last but one (ROME cannot edit the last), and ``peak``."""
    last = families.n_layers(model) - 2
    spaced = {round(i * last / (SWEEP_LAYERS - 1)) for i in range(SWEEP_LAYERS)}
    return sorted(spaced | {min(peak, last)})


def _sample_size(model: TransformerBridge, layers: list[int], known: list[Fact], progress: bool) -> dict[str, Any]:
    """The smallest corpus sample after which C^-1 k stops moving at every one of ``layers``."""
    texts = CORPORA[CORPUS]()
    sizes = [n for n in SAMPLE_SIZES if n <= len(texts)]
    requests = [EditRequest("{}", f.subject, f.object) for f in known[:32]]
    keys = {layer: mean_keys(model, layer, requests, ["{}"]) for layer in layers}  # [n, d_mlp] each
    previous, agreement = None, []
    chosen = sizes[-1]
    for size, moments in growing_second_moments(model, layers, texts, sizes, corpus_name=CORPUS, progress=progress):
        directions = {layer: _directions(moments[layer], keys[layer]) for layer in layers}
        if previous is not None:
            cosine = min(float(torch.nn.functional.cosine_similarity(directions[l], previous[l], dim=0).mean())
                         for l in layers)
            agreement.append({"from": sizes[sizes.index(size) - 1], "to": size, "min_mean_cosine": round(cosine, 4)})
            if cosine >= CONVERGED:
                chosen = size
                break
        previous = directions
    return {"n_samples": chosen, "converged": bool(agreement) and agreement[-1]["min_mean_cosine"] >= CONVERGED,
            "convergence": agreement, "criterion": f"mean cosine of C^-1 k >= {CONVERGED}", "layers": layers}


def _directions(moment: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """C^-1 k for each key (columns), or NaNs where C is singular (a sample too small)."""
    factor, info = torch.linalg.cholesky_ex(moment.double())
    if info.item() != 0:
        return torch.full_like(keys.T, float("nan"))
    return torch.cholesky_solve(keys.T.double(), factor)


def _rome_sweep(model: TransformerBridge, cases, layers: list[int], progress: bool) -> dict[str, Any]:
    """ROME on each case alone at every candidate layer, without context prefixes (the first ROME grid point)."""
    with using_corpus(CORPORA[CORPUS](), CORPUS):  # every layer's statistics in one pass over the corpus
        second_moments(model, layers, n_samples=SWEEP_SAMPLES, progress=progress)
    rows = {}
    for layer in tqdm(layers, desc="ROME layer sweep", unit="layer", leave=False, disable=not progress):
        result = run_bench(model, cases, "rome", layer=layer, fluency_tokens=0, free_generation=False, progress=False,
                           mom2_n_samples=SWEEP_SAMPLES, **ROME_SEARCH)
        rows[str(layer)] = _scores(result.after, result.edit_seconds)
        unedited = _scores(result.before)
    best = max(layers, key=lambda layer: (rows[str(layer)]["score"], -layer))
    return {"method": "rome", "cases": len(cases), "settings": {**ROME_SEARCH, "mom2_n_samples": SWEEP_SAMPLES},
            "unedited": unedited, "scores": rows, "best_layer": best}


def _editor_settings(model: TransformerBridge, tuning, layer: int, n_samples: int, budget: _Budget,
                     state: dict[str, Any]) -> dict[str, Any]:
    """ROME's, MEMIT's and AlphaEdit's settings from their grids (each point scored on the tuning split)."""
    cases = tuning[:ROME_CASES]
    rome_rows = _tightening_bounds(model, cases, layer, {"mom2_n_samples": n_samples, **ROME_SEARCH}, budget)
    rome = _best(rome_rows)
    memit_layers = _memit_layers(model, layer)
    batch = tuning[:MEMIT_CASES]
    base = {"mom2_n_samples": n_samples, **MASS_EDIT_SEARCH}
    memit_rows = [_batch_point(model, batch, "memit", memit_layers, {**base, **point}, budget, first=index == 0)
                  for index, point in enumerate(MEMIT_LAMBDAS)]
    memit_rows.append(_batch_point(model, batch, "memit", memit_layers, {**_best(memit_rows), **MEMIT_PASSES}, budget,
                                   first=False))
    memit = _best(memit_rows)
    search = {name: memit[name] for name in MEMIT_PASSES if name in memit}
    alpha_rows = [_batch_point(model, batch, "alphaedit", memit_layers, {**base, **search, **point}, budget,
                               first=index == 0) for index, point in enumerate(ALPHAEDIT_GRID)]
    alphaedit = _best(alpha_rows)
    state["grids"] = {"rome": {"cases": len(cases), "layer": layer, "rows": rome_rows},
                      "memit": {"cases": len(batch), "layers": memit_layers, "rows": memit_rows},
                      "alphaedit": {"cases": len(batch), "layers": memit_layers, "rows": alpha_rows}}
    return {
        "rome": {"layer": layer, **rome},
        "memit": {"layer": memit_layers, **memit},
        "alphaedit": {"layer": memit_layers, **alphaedit},
        "ft": {"layer": layer},
        "ft-l": {"layer": layer},
    }


def _tightening_bounds(model, cases, layer: int, settings: dict, budget: _Budget) -> list[dict[str, Any]]:
    """ROME's grid: the points of :data:`ROME_BOUNDS` in turn, until one is skipped or scores no better than
    the best before it."""
    rows: list[dict[str, Any]] = []
    for bound in ROME_BOUNDS:
        row = _bench_point(model, cases, "rome", layer, {**settings, "clamp_norm_factor": bound}, budget, first=not rows)
        best = max((earlier["score"] for earlier in rows if "score" in earlier), default=None)
        rows.append(row)
        if "score" not in row or (best is not None and row["score"] <= best):
            break
    return rows


def _memit_layers(model: TransformerBridge, layer: int) -> list[int]:
    """:data:`MEMIT_SPAN` consecutive layers ending at ``layer``, or starting at 0 where there are fewer
    layers before it (as many as the model has before its last)."""
    first = max(0, layer - MEMIT_SPAN + 1)
    return list(range(first, min(first + MEMIT_SPAN, families.n_layers(model) - 1)))


def _bench_point(model, cases, method: str, layer: int, settings: dict, budget: _Budget, first: bool) -> dict[str, Any]:
    """One grid point, each case edited alone (the first point of a grid runs whatever the budget)."""
    refusal = budget.refusal(method, 1.0, first)
    if refusal:
        return {"settings": settings, "skipped": refusal}
    with budget.timing(method):
        result = run_bench(model, cases, method, layer=layer, fluency_tokens=0, free_generation=False, progress=False,
                           **settings)
    return {"settings": settings, **_scores(result.after, result.edit_seconds)}


def _batch_point(model, cases, method: str, layers: list[int], settings: dict, budget: _Budget,
                 first: bool) -> dict[str, Any]:
    """One grid point, all cases in one edit (the first point of a grid runs whatever the budget)."""
    refusal = budget.refusal(method, float(settings.get("passes", 1)), first)
    if refusal:
        return {"settings": settings, "skipped": refusal}
    with budget.timing(method):
        run = run_scaling(model, cases, [method], [len(cases)], fluency_tokens=0, free_generation=False,
                          progress=False, hparams={method: {**settings, "layer": layers}}).runs[0]
    return {"settings": settings, **_scores(run["after"], run["edit_seconds"])}


def _best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The settings of the measured row with the highest Score (the earliest among ties)."""
    measured = [row for row in rows if "score" in row]
    best = max(measured, key=lambda row: (row["score"], -rows.index(row)))
    return dict(best["settings"])


def _scores(summary: dict[str, float], seconds: float | None = None) -> dict[str, float]:
    scores = {key: round(summary[key], 2) for key in ("efficacy_score", "paraphrase_score", "neighborhood_score", "score")}
    return scores if seconds is None else {**scores, "edit_seconds": round(seconds, 2)}
