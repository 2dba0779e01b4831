"""Every error class the workbench raises: triggered through the public API, and listed in the
troubleshooting table of the docs."""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest
from weights_snapshot import changed, snapshot

import workbench
from workbench import errors
from workbench.data import EditRequest, read_counterfact
from workbench.locate.tracing import trace
from workbench.tokens import encode

TROUBLESHOOTING = Path(__file__).parents[1] / "docs" / "troubleshooting.md"


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["gpt2"])


def _unsupported_model(tmp_path, model):
    config = {"model_type": "bert", "architectures": ["BertForMaskedLM"]}
    (tmp_path / "config.json").write_text(json.dumps(config))
    workbench.load_model(tmp_path)


def _bad_counterfact(tmp_path, model):
    (tmp_path / "counterfact.json").write_text(json.dumps([{"case_id": 0}]))
    read_counterfact(tmp_path / "counterfact.json")


def _already_predicted(tmp_path, model):
    prompt = "The capital of {} is"
    top = workbench.predict.top_predictions(model, prompt.format("France"), k=1)[0].token.strip()
    workbench.edit(model, EditRequest(prompt, "France", top), layer=0)


def _damaged_settings(tmp_path, model):
    from workbench.settings import write_settings

    folder = write_settings(tmp_path / "settings", {"weights_sha256": "0" * 64}, {"known_facts.jsonl": ""})
    (folder / "known_facts.jsonl").write_text("edited\n")
    workbench.load_model(model.original_model.name_or_path, settings=folder)


def _settings_of_other_weights(tmp_path, model):
    from workbench.settings import write_settings

    folder = write_settings(tmp_path / "settings", {"weights_sha256": "0" * 64}, {})
    workbench.load_model(model.original_model.name_or_path, settings=folder)


TRIGGERS = {
    errors.ModelNotFoundError: lambda tmp_path, model: workbench.load_model(tmp_path / "missing"),
    errors.UnsupportedModelError: _unsupported_model,
    errors.LayerOutOfRangeError: lambda tmp_path, model: workbench.edit(
        model, EditRequest("The capital of {} is", "France", "Rome"), layer=99),
    errors.InvalidRequestError: lambda tmp_path, model: workbench.edit(model, [], method="rome"),
    errors.PromptTemplateError: lambda tmp_path, model: EditRequest("The capital of France is", "France", "Rome"),
    errors.SubjectNotInPromptError: lambda tmp_path, model: trace(model, "The capital of France is", "Spain"),
    errors.DatasetFormatError: _bad_counterfact,
    errors.PromptTooLongError: lambda tmp_path, model: encode(model, "word " * 500),
    errors.TargetAlreadyPredictedError: _already_predicted,
    errors.TooFewKnownFactsError: lambda tmp_path, model: workbench.calibrate(model, output=tmp_path / "s", progress=False),
    errors.SettingsDamagedError: _damaged_settings,
    errors.SettingsMismatchError: _settings_of_other_weights,
}


def test_every_error_class_has_a_trigger_and_a_troubleshooting_row():
    defined = {cls for _, cls in inspect.getmembers(errors, inspect.isclass)
               if issubclass(cls, errors.WorkbenchError) and cls is not errors.WorkbenchError}
    assert defined == set(TRIGGERS)
    table = TROUBLESHOOTING.read_text(encoding="utf-8")
    for cls in defined:
        assert f"| `{cls.__name__}` |" in table, f"{cls.__name__} is missing from {TROUBLESHOOTING}"


@pytest.mark.parametrize("error", list(TRIGGERS), ids=lambda cls: cls.__name__)
def test_error_is_raised_with_a_message_and_the_model_untouched(error, tmp_path, model):
    before = snapshot(model)
    with pytest.raises(error) as raised:
        TRIGGERS[error](tmp_path, model)
    assert type(raised.value) is error
    assert len(str(raised.value)) > 20
    assert changed(model, before) == set()
