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
def test_editor_settings_name_real_hyper_parameters(tiny_model_dirs, name):
    model = workbench.load_model(tiny_model_dirs["gpt2"])
    for method, settings in RECORDS[name].editor_settings.items():
        valid = {f.name for f in dataclasses.fields(EDITORS[method].defaults(model))} | {"layer"}
        assert set(settings) <= valid, (method, set(settings) - valid)


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

    tuned = dataclasses.replace(RECORDS["factgpt"], editor_settings={"ft": {"layer": 2, "steps": 3}})
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
