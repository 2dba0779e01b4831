"""Calibrated settings: checksummed, bound to the weights, written atomically, applied by load_model."""
from __future__ import annotations

import json

import pytest

import workbench
from workbench.edit.api import hyperparameters
from workbench.edit.stats import weights_fingerprint
from workbench.errors import SettingsDamagedError, SettingsMismatchError
from workbench.models import cache_root, record_of
from workbench.settings import read_settings, settings_directory, write_settings

CONTENT = {"prompt": {"prefix": None}, "statistics": {"corpus": "factgpt-training"},
           "editors": {"rome": {"layer": 1, "v_lr": 0.25, "prefixes": [[3, 2]]}, "memit": {"layer": [0, 1]}}}
FILES = {"known_facts.jsonl": '{"subject": "France", "relation_id": "P36", "object": "Paris"}\n',
         "counterfact.json": "[]"}


def _write(directory, fingerprint="0" * 64):
    return write_settings(directory, {"weights_sha256": fingerprint, **CONTENT}, FILES)


def test_settings_read_back_as_written(tmp_path):
    settings = read_settings(_write(tmp_path / "s"), "0" * 64)
    assert settings.prefix is None and settings.corpus == "factgpt-training"
    assert settings.editor_settings["rome"] == {"layer": 1, "v_lr": 0.25, "prefixes": ((3, 2),)}
    assert settings.editor_settings["memit"]["layer"] == (0, 1)


@pytest.mark.parametrize("damage", ["settings.json", "known_facts.jsonl", "counterfact.json", "missing"])
def test_damaged_settings_are_refused(tmp_path, damage):
    directory = _write(tmp_path / "s")
    if damage == "missing":
        (directory / "counterfact.json").unlink()
    elif damage == "settings.json":
        content = json.loads((directory / damage).read_text())
        content["editors"]["rome"]["v_lr"] = 5.0  # a hand edit without a new checksum
        (directory / damage).write_text(json.dumps(content))
    else:
        (directory / damage).write_text((directory / damage).read_text() + " ")
    with pytest.raises(SettingsDamagedError, match="calibrate"):
        read_settings(directory)


def test_settings_of_other_weights_are_refused(tmp_path):
    with pytest.raises(SettingsMismatchError, match="other weights"):
        read_settings(_write(tmp_path / "s"), "1" * 64)


def test_an_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    import workbench.settings as settings_module

    def fail(data):
        raise KeyboardInterrupt

    monkeypatch.setattr(settings_module, "_sha256", fail)
    with pytest.raises(KeyboardInterrupt):
        _write(tmp_path / "s")
    assert list(tmp_path.iterdir()) == []


def test_load_model_applies_the_settings_of_its_weights(tiny_model_dirs):
    plain = workbench.load_model(tiny_model_dirs["gpt2"])
    assert record_of(plain) is None and plain.tokenizer("Paris")["input_ids"][0] == plain.tokenizer.bos_token_id
    fingerprint = weights_fingerprint(plain)
    directory = _write(settings_directory(cache_root() / "settings", fingerprint), fingerprint)
    try:
        model = workbench.load_model(tiny_model_dirs["gpt2"])
        assert model.workbench_settings.directory == directory
        assert model.tokenizer("Paris")["input_ids"] == plain.tokenizer("Paris", add_special_tokens=False)["input_ids"]
        record = record_of(model)
        assert record.corpus == "factgpt-training" and [f.object for f in record.facts()] == ["Paris"]
        assert hyperparameters(model, "rome").v_lr == 0.25 and hyperparameters(model, "rome").prefixes == ((3, 2),)
        assert hyperparameters(model, "rome", v_lr=2.0).v_lr == 2.0  # arguments still win
        assert workbench.load_model(tiny_model_dirs["gpt2"], settings=False).workbench_settings is None
        with pytest.raises(SettingsMismatchError):
            workbench.load_model(tiny_model_dirs["llama"], settings=directory)
    finally:
        import shutil

        shutil.rmtree(directory)
