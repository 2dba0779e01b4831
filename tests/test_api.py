"""The package top: the entry points a notebook imports with one line, an edit written as plain
strings, and short reprs of results (no module trees)."""
from __future__ import annotations

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench.data import EditRequest
from workbench.errors import InvalidRequestError, SubjectNotInPromptError

FAST = {"v_steps": 5, "mom2_n_samples": 200, "prefixes": ()}
ENTRY_POINTS = ("load_model", "trace", "trace_kinds", "trace_many", "attribute", "knowledge_neurons",
                "activation_patching", "attribution_patching", "memory", "edit", "load_edit", "run_bench",
                "run_scaling", "run_sequential", "case_metrics", "summarize", "benchmark", "top_predictions")


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["gpt2"])


def test_entry_points_are_importable_from_the_top():
    namespace: dict = {}
    exec(f"from workbench import {', '.join(ENTRY_POINTS)}", namespace)
    assert all(callable(namespace[name]) for name in ENTRY_POINTS)
    assert set(ENTRY_POINTS) <= set(workbench.__all__)


@pytest.mark.usefixtures("editing_corpus")
def test_an_edit_from_plain_strings_equals_the_same_edit_as_a_request(model):
    strings = {"prompt": "The capital of France is", "subject": "France", "target": "Rome"}
    with workbench.edit(model, layer=0, check_targets=False, **strings, **FAST) as from_strings:
        deltas = {name: delta.clone() for name, delta in from_strings.deltas.items()}
        assert from_strings.requests == [EditRequest("The capital of {} is", "France", "Rome")]
    request = EditRequest("The capital of {} is", "France", "Rome")
    with workbench.edit(model, request, layer=0, check_targets=False, **FAST) as from_request:
        assert from_request.deltas.keys() == deltas.keys()
        for name, delta in from_request.deltas.items():
            torch.testing.assert_close(delta, deltas[name])


@pytest.mark.parametrize("arguments, error", [
    ({"prompt": "The capital of France is", "subject": "France"}, InvalidRequestError),  # no target
    ({"subject": "France", "target": "Rome"}, InvalidRequestError),  # no prompt
    ({"prompt": "The capital of France is", "subject": "Spain", "target": "Rome"}, SubjectNotInPromptError),
])
def test_incomplete_or_wrong_strings_are_refused_before_any_weight_changes(model, arguments, error):
    before = snapshot(model)
    with pytest.raises(error):
        workbench.edit(model, layer=0, **arguments)
    assert changed(model, before) == set()


def test_requests_and_strings_together_are_refused(model):
    request = EditRequest("The capital of {} is", "France", "Rome")
    with pytest.raises(InvalidRequestError, match="not both"):
        workbench.edit(model, request, prompt="The capital of France is", subject="France", target="Rome")


@pytest.mark.usefixtures("editing_corpus")
def test_reprs_are_one_short_line(model, tmp_path):
    traced = workbench.trace(model, "The capital of France is", "France", samples=2)
    with workbench.edit(model, EditRequest("The capital of {} is", "France", "Rome"), layer=0,
                        check_targets=False, **FAST) as result:
        saved = workbench.load_edit(result.save(tmp_path / "edit"))
        for value in (traced, result, saved):
            text = repr(value)
            assert "\n" not in text and len(text) < 400, text
        assert "array[" in repr(traced) and "'France' -> 'Rome'" in repr(result)
        assert repr(saved).startswith("SavedEdit(method='rome'")
