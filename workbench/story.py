"""The main job: the end-to-end story of the workbench on a bundled model (``smollm2-135m`` by default).

1. what the model knows: one known fact per relation, its answer and probability;
2. causal tracing of one fact, three kinds of state (figure);
3. the average indirect effect over many known facts and the layer it recommends (figure);
4. the traced fact's knowledge neurons and what suppressing or amplifying them does (figure);
5. a ROME edit from plain strings, before/after on the rewrite prompt, paraphrases, neighbours and a
   short generation, then restore, checked bit-exact;
6. MEMIT with a batch of benchmark edits (its evaluation split): the CounterFact table, unedited vs
   edited, then restore.

``factgpt`` (``workbench story --model factgpt``) tells the same story on the small model trained on
known facts: tracing and knowledge neurons have ground truth there, and its ROME/MEMIT steps show
the editors failing on a model that reads facts at the last token. Figures go to ``figures/`` (or
``out``), named ``story_<model>_*.png``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

from workbench.data import EditRequest
from workbench.evaluate.metric_table import METRICS
from workbench.models import hf_state_dict, load_model, record_of
from workbench.predict import greedy_completion, top_predictions


@dataclass(frozen=True)
class StoryScript:
    """The facts a model's story is told with, and how much of each step it runs."""

    trace_prompt: str
    trace_subject: str
    neuron_prompts: tuple[str, ...]
    """Paraphrases of the traced fact, for its knowledge neurons."""
    rewrite: EditRequest
    """ROME's edit; its filled prompt is shown before and after."""
    paraphrases: tuple[str, ...]
    neighbours: tuple[str, ...]
    """Prompts about other subjects with the same true answer: an edit should leave them alone."""
    generation_prompt: str
    n_facts: int
    """Known facts averaged over by the indirect-effect step."""
    n_edits: int
    """Edits of MEMIT's batch."""
    trace_samples: int = 10
    """Noise samples of the one-fact trace (ROME: 10)."""
    average_kinds: tuple[str, ...] = ("hidden", "mlp", "attn")
    """The kinds of state the indirect effect is averaged for (the MLP kind recommends the layer)."""
    first_neuron_layer: int = 0
    """The first layer searched for knowledge neurons (layers below it are left out)."""
    n_negatives: int = 8
    """Unrelated facts whose shared neurons are dropped from the knowledge neurons."""
    locate_dtype: str = "float32"
    """Compute dtype of the locate steps' matrix products (trace, average effect, neurons)."""
    memit_overrides: dict = field(default_factory=dict)


SCRIPTS = {
    "smollm2-135m": StoryScript(
        trace_prompt="The Eiffel Tower is located in the city of",
        trace_subject="Eiffel Tower",
        neuron_prompts=("The Eiffel Tower is located in the city of", "The Eiffel Tower is in the city of",
                        "The Eiffel Tower stands in the city of", "The Eiffel Tower can be found in the city of"),
        rewrite=EditRequest("The {} is located in the city of", "Eiffel Tower", "Rome", "Paris"),
        paraphrases=("The Eiffel Tower stands in the city of", "Tourists visit the Eiffel Tower in the city of"),
        neighbours=("The Louvre is located in the city of", "The Arc de Triomphe stands in the city of"),
        generation_prompt="The Eiffel Tower is",
        # a full trace of this 30-layer model costs about 1.5 s per noise sample in bfloat16 (3 kinds,
        # 2 cores), so the story traces with 5 samples and averages the MLP kind only (the one that
        # recommends the layer)
        trace_samples=5,
        average_kinds=("mlp",),
        # integrated gradients do not converge on the first MLP layer of this model (convergence
        # delta about 1 against under 1e-4 elsewhere): its neuron scores are not read
        first_neuron_layer=1,
        n_negatives=4,
        # bfloat16 products: 1.5x faster here, and the average-effect figure stays the same (12 facts,
        # 3 kinds: correlation 0.99993, largest difference 2% of the largest effect, same layer and
        # MEMIT window; python benchmarks/aie_precision.py), the same 25 knowledge neurons of the traced fact
        locate_dtype="bfloat16",
        n_facts=12,
        n_edits=60,  # 100 took the story to 350 s with the calibrated search (MEMIT step 172 s), over 300
    ),
    "factgpt": StoryScript(
        trace_prompt="The capital of Burkina Faso is",
        trace_subject="Burkina Faso",
        neuron_prompts=("The capital of Burkina Faso is", "Burkina Faso's capital city is",
                        "The capital city of Burkina Faso is", "Burkina Faso has its capital in"),
        rewrite=EditRequest("The capital of {} is", "Burkina Faso", "Lima", "Ouagadougou"),
        paraphrases=("Burkina Faso's capital city is", "The capital city of Burkina Faso is"),
        neighbours=("The capital of Mali is", "The capital of Niger is"),
        generation_prompt="The capital of Burkina Faso is",
        n_facts=200,
        n_edits=200,
        # targets searched on each prompt alone, as for smollm2-135m (2.5x faster than with contexts)
        memit_overrides={"prefixes": ()},
    ),
}
"""Bundled model name -> the :class:`StoryScript` its story is told with."""


def run_story(model_name: str = "smollm2-135m", out: str | Path = "figures", n_facts: int | None = None,
              n_edits: int | None = None) -> dict:
    """Run the story and print its summary (this is the command line's job, so it prints).

    ``n_facts`` and ``n_edits`` override the script's numbers of traced facts and MEMIT edits.
    Returns what the editing steps measured, ``{"rome": {"top_after": {prompt: token}, "restored":
    bool}, "memit": {"unedited": metrics, "edited": metrics}}``, and ``"seconds"`` per step."""
    matplotlib.use("Agg")
    started = time.perf_counter()
    script = SCRIPTS[model_name]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = load_model(model_name)
    seconds = {"load": time.perf_counter() - started}
    figures = _Figures(out, model_name)
    steps = {
        "facts": lambda: _facts_table(model, model_name),
        "trace": lambda: _trace_one(model, script, figures),
        "average effect": lambda: _average_effect(model, n_facts or script.n_facts, script, figures),
        "neurons": lambda: _neurons(model, script, figures),
        "rome": lambda: _rome(model, script),
        "memit": lambda: _memit(model, n_edits or script.n_edits, script.memit_overrides),
    }
    outcome = {}
    for name, step in steps.items():
        step_started = time.perf_counter()
        outcome[name] = step()
        seconds[name] = time.perf_counter() - step_started
    outcome["seconds"] = seconds
    print(f"\nfigures: {out.resolve()}  |  total time {time.perf_counter() - started:.0f} s ("
          + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items()) + ")")
    return outcome


@dataclass(frozen=True)
class _Figures:
    out: Path
    model_name: str

    def save(self, figure, name: str) -> Path:
        path = self.out / f"story_{self.model_name}_{name}.png"
        figure.savefig(path, dpi=110)
        return path


def _facts_table(model, model_name: str) -> None:
    print(f"== 1. {model_name}: {model.cfg.n_layers} layers, d_model {model.cfg.d_model}; what it knows\n")
    record = record_of(model)
    per_relation = record.known_facts(len({f.relation_id for f in record.facts()}))
    rows = [("prompt", "true object", "model says", "p(top-1)")]
    for prompt, _, answer in per_relation:
        said = greedy_completion(model, prompt, max_new_tokens=4).strip()
        rows.append((prompt, answer, said, f"{top_predictions(model, prompt, k=1)[0].probability:.2f}"))
    _print_table(rows)


def _trace_one(model, script: StoryScript, figures: _Figures) -> None:
    from workbench.edit.layers import tracing_window
    from workbench.locate.tracing import trace_kinds
    from workbench.plot.tracing import plot_trace_panels

    window = tracing_window(model)
    traces = trace_kinds(model, script.trace_prompt, script.trace_subject, window=window, samples=script.trace_samples,
                         dtype=script.locate_dtype, progress=True)
    path = figures.save(plot_trace_panels(traces), "causal_trace")
    print(f"\n== 2. causal trace of {script.trace_prompt!r} -> {traces[0].answer.strip()!r} "
          f"({script.trace_samples} noise samples, window {window}; {path.name})")
    print(f"clean p = {traces[0].clean_prob:.3f}, subject corrupted p = {traces[0].corrupted_prob:.3f}")
    print("strongest restoration of p(answer) among the subject's tokens, and at the last token:")
    for result in traces:
        subject = result.scores[result.subject_start : result.subject_end]  # [subject tokens, layers]
        offset, subject_layer = divmod(int(subject.argmax()), subject.shape[1])
        last = len(result.tokens) - 1
        last_layer = int(result.scores[last].argmax())
        print(f"  {result.kind:>6}: {result.tokens[result.subject_start + offset]!r} layer {subject_layer} "
              f"(p = {subject.max():.3f});  {result.tokens[last]!r} layer {last_layer} "
              f"(p = {result.scores[last, last_layer]:.3f})")


def _average_effect(model, n_facts: int, script: StoryScript, figures: _Figures) -> None:
    from workbench.edit.layers import tracing_window
    from workbench.locate.effects import LAST_SUBJECT, trace_many

    record = record_of(model)
    effect = trace_many(model, record.known_facts(n_facts), kinds=script.average_kinds, samples=3,
                        window=tracing_window(model), dtype=script.locate_dtype)
    path = figures.save(effect.plot(), "average_indirect_effect")
    curve = effect.effects["mlp"][LAST_SUBJECT]
    print(f"\n== 3. average indirect effect over {effect.n_facts} known facts, 3 noise samples each (mean clean p "
          f"{effect.clean_prob:.2f}, corrupted {effect.corrupted_prob:.2f}; {path.name})")
    print("MLP effect at the last subject token, by layer: " + "  ".join(f"{l}:{v:+.3f}" for l, v in enumerate(curve)))
    tuned = record.editor_settings.get("rome", {}).get("layer")
    print(f"tracing recommends layer {effect.recommend_layer()}; "
          + (f"ROME edits layer {tuned}, chosen by an edit sweep on the tuning split (model card)"
             if tuned is not None else "ROME edits there"))


def _neurons(model, script: StoryScript, figures: _Figures) -> None:
    from workbench.locate.neurons import intervention_effect, knowledge_neurons
    from workbench.plot.attribution import plot_layer_counts

    prompts = list(script.neuron_prompts)
    answer = top_predictions(model, prompts[0], k=1)[0].token.strip()
    known = record_of(model).known_facts(40)
    # Dai et al.'s refinement: neurons that also fire for unrelated facts are dropped; the effects
    # below are measured on other unrelated facts than the ones used to filter
    negatives = [prompt for prompt, _, _ in known[-8 - script.n_negatives : -8]]
    others = [(prompt, true_object) for prompt, _, true_object in known[-8:]]
    layers = range(script.first_neuron_layer, model.cfg.n_layers)
    found = knowledge_neurons(model, prompts, answer, negative_prompts=negatives, layers=layers,
                              dtype=script.locate_dtype)
    counts = found.by_layer(model.cfg.n_layers)
    path = figures.save(plot_layer_counts(counts, 1), "knowledge_neurons")
    print(f"\n== 4. knowledge neurons of {script.trace_subject!r} -> {answer!r} over {len(prompts)} paraphrases: "
          f"{len(found.neurons)} neurons in layers {[l for l, c in enumerate(counts.tolist()) if c]} (searched: layers "
          f"{layers.start}-{layers.stop - 1}), after dropping those shared with {len(negatives)} unrelated facts ({path.name})")
    if not found.neurons:
        return
    rows = [("intervention", "this fact", f"{len(others)} unrelated facts")]
    for name, scale in (("suppress (x0)", 0.0), ("amplify (x2)", 2.0)):
        related = intervention_effect(model, found.neurons, prompts, [answer] * len(prompts), scale).mean()
        unrelated = intervention_effect(model, found.neurons, [p for p, _ in others], [a for _, a in others], scale).mean()
        rows.append((name, f"{related:+.1%}", f"{unrelated:+.1%}"))
    print("mean relative change of p(answer):")
    _print_table(rows)


def _rome(model, script: StoryScript) -> dict:
    import workbench
    from workbench.evaluate.views import before_after

    request = script.rewrite
    prompts = [request.filled_prompt(), *script.paraphrases, *script.neighbours]
    roles = ["rewrite"] + ["paraphrase"] * len(script.paraphrases) + ["neighbour"] * len(script.neighbours)
    weights = {name: tensor.clone() for name, tensor in hf_state_dict(model).items()}
    before = before_after(model, prompts)
    generated_before = greedy_completion(model, script.generation_prompt, max_new_tokens=12)
    started = time.perf_counter()
    with workbench.edit(model, prompt=request.filled_prompt(), subject=request.subject,
                        target=request.target_new) as result:
        seconds = time.perf_counter() - started
        after = before_after(model, prompts)
        generated_after = greedy_completion(model, script.generation_prompt, max_new_tokens=12)
        top_after = {prompt: top_predictions(model, prompt, k=1)[0].token.strip() for prompt in prompts}
    restored = all(tensor.equal(weights[name]) for name, tensor in hf_state_dict(model).items())
    print(f"\n== 5. ROME: {request.subject!r}: {request.target_true!r} -> {request.target_new!r}, layer "
          f"{result.layers[0]} ({seconds:.1f} s, statistics included on first run)")
    rows = [("", "prompt", "before (top 3)", "after (top 3)")]
    rows += [(role, prompt, before[prompt], after[prompt]) for role, prompt in zip(roles, prompts)]
    _print_table(rows)
    print(f"generation before: {script.generation_prompt}{generated_before}")
    print(f"generation after:  {script.generation_prompt}{generated_after}")
    if top_after[prompts[0]] != request.target_new.strip():
        print("The edit did not flip this fact: this model reads the fact at the last token, where ROME\n"
              "does not write (step 3); `workbench bench --method rome` measures how often it succeeds.")
    print(f"restored: every weight bit-identical to the original: {restored} "
          f"(changed during the edit: {', '.join(result.deltas)})")
    return {"top_after": top_after, "restored": restored}


def _memit(model, n_edits: int, overrides: dict) -> dict:
    import workbench
    from workbench.evaluate.metrics import case_metrics, summarize, without_edited_neighbours

    records = record_of(model).benchmark(n_edits, split="evaluation")
    measured, dropped = without_edited_neighbours(records, [r.requested_rewrite.subject for r in records])
    before = summarize(case_metrics(model, measured))
    before.update(_free_generation(model, measured))
    started = time.perf_counter()
    with workbench.edit(model, records, method="memit", progress=True, **overrides) as result:
        seconds = time.perf_counter() - started
        after = summarize(case_metrics(model, measured))
        after.update(_free_generation(model, measured))
    print(f"\n== 6. MEMIT: {len(records)} benchmark edits (evaluation split) in one batch into layers "
          f"{result.info['layers']} ({seconds:.0f} s); neighbourhood prompts about subjects of the batch "
          f"({dropped}) are left out of NS")
    rows = [("CounterFact metric", "unedited", "edited")]
    for key in ("efficacy_score", "paraphrase_score", "neighborhood_score", "score"):
        rows.append((METRICS[key].label, f"{before[key]:.1f}", f"{after[key]:.1f}"))
    for key in ("efficacy_generation_em", "paraphrase_generation_em", "neighborhood_generation_em"):
        label = METRICS[key].label.replace("(EM)", f"(EM, first {GENERATION_CASES})")
        rows.append((label, f"{before[key]:.1f}", f"{after[key]:.1f}"))
    _print_table(rows)
    print("restored after the batch; `workbench bench --methods rome,memit,kn,ft,ft-l` compares the editors.")
    return {"unedited": before, "edited": after}


GENERATION_CASES = 30
"""Cases whose greedy generations the story judges (generation is the dearest measurement on a CPU)."""


def _free_generation(model, cases) -> dict:
    from workbench.evaluate.generation import generation_metrics
    from workbench.evaluate.metrics import summarize

    return summarize(generation_metrics(model, cases[:GENERATION_CASES]))


def _print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
        if n == 0:
            print("  ".join("-" * width for width in widths))
