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
