"""The tuning commands' argument parsing and the record's tuning file."""
from __future__ import annotations

import dataclasses
import json

import pytest

from workbench.zoo.records import RECORDS
from workbench.zoo.tuning import append_grid, parse_layers, parse_values, save_measurement, tuning_file


def test_values_are_json_lists():
    assert parse_values(["v_lr=0.5,1", "prefixes=[],[[5,2],[10,2]]"]) == {
        "v_lr": [0.5, 1], "prefixes": [[], [[5, 2], [10, 2]]]}
    for bad in ("v_lr", "v_lr=", "=1", "v_lr=[1"):
        with pytest.raises(SystemExit):
            parse_values([bad])


def test_layer_ranges():
    assert parse_layers("0-24:3") == [0, 3, 6, 9, 12, 15, 18, 21, 24]
    assert parse_layers("2-4") == [2, 3, 4]
    assert parse_layers("3,5,8") == [3, 5, 8]


def test_measurements_are_merged_by_key(tmp_path):
    record = dataclasses.replace(RECORDS["smollm2-135m"], folder=tmp_path)
    save_measurement(record, "layers", {"best_layer": 4})
    save_measurement(record, "trace", {"recommended_layer": 3})
    save_measurement(record, "layers", {"best_layer": 5})
    assert json.loads(tuning_file(record).read_text()) == {"layers": {"best_layer": 5}, "trace": {"recommended_layer": 3}}


def test_grid_runs_accumulate_with_their_commands(tmp_path):
    record = dataclasses.replace(RECORDS["smollm2-135m"], folder=tmp_path)
    save_measurement(record, "trace", {"recommended_layer": 3})
    append_grid(record, "memit", {"command": "first", "rows": [1]})
    append_grid(record, "memit", {"command": "second", "rows": [2]})
    saved = json.loads(tuning_file(record).read_text())
    assert [grid["command"] for grid in saved["grid-memit"]["grids"]] == ["first", "second"]
    assert saved["trace"] == {"recommended_layer": 3}


def test_the_record_memit_settings_are_a_measured_row():
    """MEMIT's settings in the record are those a row measured on the tuning split ran with."""
    record = RECORDS["smollm2-135m"]
    settings = {k: list(v) if isinstance(v, tuple) else v for k, v in record.editor_settings["memit"].items()
                if k != "layer"}
    grids = json.loads(tuning_file(record).read_text())["grid-memit"]["grids"]
    in_effect = [row["in_effect"] for grid in grids for row in grid["rows"] if "in_effect" in row]
    assert any({k: row[k] for k in settings} == settings for row in in_effect)


def test_the_record_alphaedit_projection_settings_are_a_measured_row():
    """AlphaEdit's projection settings in the record were measured, with MEMIT's layers and the
    one-pass search MEMIT had then (MEMIT's record since searches twice, to a whole-target stop)."""
    record = RECORDS["smollm2-135m"]
    chosen = {k: record.editor_settings["alphaedit"][k] for k in ("null_space_threshold", "l2")}
    grids = json.loads(tuning_file(record).read_text())["grid-alphaedit"]["grids"]
    assert chosen in [row["settings"] for grid in grids for row in grid["rows"]]
    placement = ("layer", "span", "prefixes", "v_lr", "mom2_n_samples")
    assert [record.editor_settings["alphaedit"][k] for k in placement] == [record.editor_settings["memit"][k]
                                                                           for k in placement]
    assert {k: record.editor_settings["alphaedit"][k] for k in ("stop_loss", "passes", "stop_on")
            if k in record.editor_settings["alphaedit"]} == {"stop_loss": 0.3}  # the one-pass search


def test_the_bundled_tuning_file_backs_the_record_note():
    """The numbers the settings note cites are those measured and kept beside it."""
    record = RECORDS["smollm2-135m"]
    measured = json.loads(tuning_file(record).read_text())
    assert measured["trace"]["recommended_layer"] == 3 and measured["trace"]["window"] == 10
    sweep = measured["layers"]
    assert sweep["settings"] == {k: list(v) if isinstance(v, tuple) else v
                                 for k, v in record.editor_settings["rome"].items() if k != "layer"}
    assert max(row["score"] for row in sweep["scores"].values()) == pytest.approx(97.2, abs=0.05)
