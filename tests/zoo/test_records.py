"""Bundled models as records: complete, consistent, and the only way edit/ and locate/ learn about them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

import workbench
from workbench.cli import _bench_records
from workbench.edit.api import EDITORS
from workbench.errors import InvalidRequestError
from workbench.zoo.corpora import CORPORA
from workbench.zoo.records import RECORDS, TUNING_EVERY

PACKAGE = Path(workbench.__file__).parent


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_every_record_is_complete(name):
    record = RECORDS[name]
    assert record.card.is_file()
    assert record.corpus in CORPORA
    if not (record.folder / record.facts_file).is_file():  # measured by `workbench calibrate` into the cache
        from workbench.errors import ModelNotFoundError

        with pytest.raises(ModelNotFoundError, match=f"workbench calibrate {name}"):
            record.facts()
        return
    assert record.facts() and record.benchmark(2)
    relations = record.relations()
    assert all(fact.relation_id in relations for fact in record.facts())


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_editor_settings_name_real_hyper_parameters(name):
    for method, settings in RECORDS[name].editor_settings.items():
        valid = {f.name for f in dataclasses.fields(EDITORS[method].settings())} | {"layer"}
        assert set(settings) <= valid, (method, set(settings) - valid)


@pytest.mark.parametrize("name", [name for name, record in RECORDS.items() if record.calibration() is not None])
def test_a_shipped_calibration_holds_only_settings_it_measured(name):
    """Every editor setting a record ships is the best measured row of its calibration grid (no hand-set
    number), and ROME's layer is the sweep's best."""
    content = RECORDS[name].calibration().content
    sweep = content["layers"]["sweep"]
    assert content["editors"]["rome"]["layer"] == int(max(sweep["scores"], key=lambda l: sweep["scores"][l]["score"]))
    for method in ("rome", "memit", "alphaedit"):
        measured = [row for row in content["grids"][method]["rows"] if "score" in row]
        chosen = {key: value for key, value in content["editors"][method].items() if key != "layer"}
        assert chosen == max(measured, key=lambda row: row["score"])["settings"], method


def test_the_splits_partition_the_benchmark():
    record = RECORDS["smollm2-135m"]
    tuning, evaluation = record.benchmark(split="tuning"), record.benchmark(split="evaluation")
    assert {c.case_id for c in tuning} == {c.case_id for c in record.benchmark() if c.case_id % TUNING_EVERY == 0}
    assert not {c.case_id for c in tuning} & {c.case_id for c in evaluation}
    assert len(tuning) + len(evaluation) == len(record.benchmark())
    with pytest.raises(InvalidRequestError, match="split"):
        record.benchmark(split="test")


def test_edit_and_locate_never_import_the_zoo():
    sources = [*(PACKAGE / "edit").glob("*.py"), *(PACKAGE / "locate").glob("*.py")]
    assert sources
    assert [path.name for path in sources if "zoo" in path.read_text()] == []


def test_the_cli_bench_reads_the_models_own_evaluation_split(tiny_model_dirs):
    factgpt = workbench.load_model("factgpt")
    assert _bench_records(factgpt, None, 5) == RECORDS["factgpt"].benchmark(5, split="evaluation")
    with pytest.raises(InvalidRequestError, match="--data"):
        _bench_records(workbench.load_model(tiny_model_dirs["gpt2"]), None, 5)


def test_a_records_tuned_settings_are_the_defaults_and_explicit_arguments_win(monkeypatch):
    from workbench.data import EditRequest
    from workbench.edit.api import hyperparameters
    from workbench.edit.finetune import FineTuneHyperParams
    from workbench.settings import CalibratedSettings

    calibration = CalibratedSettings(Path("unused"), {"editors": {"ft": {"layer": 2, "steps": 3}}})
    tuned = dataclasses.replace(RECORDS["factgpt"], calibration=lambda: calibration)
    monkeypatch.setitem(RECORDS, "factgpt", tuned)
    model = workbench.load_model("factgpt")
    request = EditRequest("The capital of {} is", "France", "Rome")
    with workbench.edit(model, request, "ft") as result:
        assert result.layers == [2] and result.info["hparams"]["steps"] == 3
    with workbench.edit(model, request, "ft", layer=4, steps=2) as result:
        assert result.layers == [4] and result.info["hparams"]["steps"] == 2
    # the settings an edit would use, asked for without editing: defaults < record < arguments
    assert hyperparameters(model, "ft", lr=0.5) == dataclasses.replace(FineTuneHyperParams(), steps=3, lr=0.5)
    assert FineTuneHyperParams().steps not in (2, 3)  # the defaults were really replaced


def test_editors_train_on_every_relation_of_the_benchmark_and_never_on_a_held_out_subject():
    from workbench.zoo.mass_requests import mass_requests

    record = RECORDS["factgpt"]
    tokenizer = workbench.load_model("factgpt").tokenizer
    training = record.editor_training_cases(tokenizer, city_cases=50)
    evaluation = record.benchmark(split="evaluation")
    trained_on = {case.requested_rewrite.subject for case in training}
    assert not trained_on & {case.requested_rewrite.subject for case in evaluation}
    cities = mass_requests(tokenizer, record.relations(), 10**6)
    assert not trained_on & {case.requested_rewrite.subject for case in cities[:-50]}
    assert {case.requested_rewrite.relation_id for case in evaluation} <= {case.requested_rewrite.relation_id for case in training}
