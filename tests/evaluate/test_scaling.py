"""The scaling study on the bundled model: both modes leave the model as it was; bad input is refused."""
from __future__ import annotations

import dataclasses
import time

import pytest
from weights_snapshot import changed, snapshot

import workbench
from workbench.edit.finetune import FineTuneHyperParams
from workbench.edit.layers import default_edit_layer
from workbench.errors import InvalidRequestError
from workbench.evaluate.metrics import case_metrics, summarize
from workbench.evaluate.resources import PeakMemory
from workbench.evaluate import scaling
from workbench.evaluate.scaling import ScalingResult, run_scaling
from workbench.zoo.benchmark import benchmark


@pytest.fixture(scope="module")
def model():
    return workbench.load_model()


@pytest.mark.parametrize("mode", ["batch", "sequential"])
def test_scaling_runs_every_method_and_count_and_restores(model, mode, tmp_path):
    records = benchmark("factgpt", 3)
    before = snapshot(model)
    result = run_scaling(model, records, ["ft", "kn"], [1, 3], mode=mode, fluency_cases=2, fluency_tokens=5,
                         progress=False)
    assert changed(model, before) == set()
    assert [(r["method"], r["n_edits"]) for r in result.runs] == [("ft", 1), ("ft", 3), ("kn", 1), ("kn", 3)]
    unedited = summarize(case_metrics(model, records))
    assert result.runs[1]["before"]["efficacy_score"] == unedited["efficacy_score"]
    # unconstrained fine-tuning on one rewrite prompt flips that fact (ROME's FT baseline: ES 100)
    assert result.runs[0]["after"]["efficacy_score"] == 100.0
    recommended = default_edit_layer(model)  # measured on the unedited model, and kept while edits accumulate
    assert [r["layers"] for r in result.runs if r["method"] == "ft"] == [[recommended], [recommended]]
    reloaded = ScalingResult.load(result.save(tmp_path / "scaling.json"))
    assert reloaded.runs == result.runs and "ES" in reloaded.table()


def test_runs_report_what_the_edits_keep(model):
    """Fine-tuning changes weights of its one layer and keeps no memory; caching the reverse."""
    records = benchmark("factgpt", 2)
    result = run_scaling(model, records, ["ft", "caching"], [2], fluency_cases=0, progress=False,
                         hparams={"ft": {"steps": 3}})
    ft, caching = result.runs
    assert ft["hparams_in_effect"] == {**dataclasses.asdict(FineTuneHyperParams()), "steps": 3}
    layer_weights = sum(p.numel() for name, p in model.original_model.named_parameters()
                        if f".{ft['layers'][0]}." in name)
    assert 0 < ft["changed_weights"] <= layer_weights and ft["memory_bytes"] == 0
    assert caching["changed_weights"] == 0 and caching["memory_bytes"] > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"mode": "shuffled"}, "unknown mode"),
        ({"edit_counts": [5]}, "between 1 and"),
        ({"edit_counts": [0]}, "between 1 and"),
        ({"methods": []}, "at least one method"),
        ({"mode": "sequential", "batch_size": 0}, "batch_size"),
    ],
)
def test_bad_scaling_requests_are_refused(model, kwargs, message):
    arguments = {"methods": ["ft"], "edit_counts": [1], **kwargs}
    with pytest.raises(InvalidRequestError, match=message):
        run_scaling(model, benchmark("factgpt", 3), arguments.pop("methods"), arguments.pop("edit_counts"), progress=False,
                    **arguments)


def test_peak_memory_sees_a_large_allocation():
    with PeakMemory() as small:
        pass
    with PeakMemory(interval=0.001) as large:
        block = bytearray(200 * 2**20)
        block[::4096] = b"x" * len(block[::4096])
        time.sleep(0.3)  # the sampler needs the GIL and a CPU while the block is alive
        del block  # gone before the block ends: only the sampler can have seen it
    assert large.megabytes - small.megabytes > 150


def _result(mode, runs, fluency_tokens=20):
    return ScalingResult(mode=mode, batch_size=0, runs=[{"method": m, "n_edits": n} for m, n in runs],
                         settings={"fluency_cases": 20, "fluency_tokens": fluency_tokens, "hparams": {}})


def test_merged_results_keep_method_order_and_sort_by_edits():
    sweep = _result("batch", [("rome", 1), ("rome", 10), ("kn", 1), ("kn", 10)])
    large = _result("batch", [("kn", 1000), ("rome", 1000)])
    merged = ScalingResult.merged([large, sweep])
    assert [(run["method"], run["n_edits"]) for run in merged.runs] == [
        ("kn", 1), ("kn", 10), ("kn", 1000), ("rome", 1), ("rome", 10), ("rome", 1000)]


@pytest.mark.parametrize("other", [
    _result("sequential", [("kn", 1000)]),
    _result("batch", [("kn", 1000)], fluency_tokens=30),
    _result("batch", [("kn", 10)]),
])
def test_results_that_do_not_belong_together_are_not_merged(other):
    with pytest.raises(InvalidRequestError):
        ScalingResult.merged([_result("batch", [("kn", 1), ("kn", 10)]), other])


def test_an_interrupted_sweep_resumes_from_its_checkpoint(model, tmp_path, monkeypatch):
    records = benchmark("factgpt", 2)
    checkpoint = tmp_path / "sweep.json"
    first = run_scaling(model, records, ["ft"], [1], fluency_cases=1, fluency_tokens=3, progress=False,
                        checkpoint=checkpoint)
    assert ScalingResult.load(checkpoint).runs == first.runs
    measured_sizes = []
    measure = scaling._measure
    monkeypatch.setattr(scaling, "_measure", lambda m, cases, *a: measured_sizes.append(len(cases)) or measure(m, cases, *a))
    resumed = run_scaling(model, records, ["kn", "ft"], [1, 2], fluency_cases=1, fluency_tokens=3, progress=False,
                          checkpoint=checkpoint)
    # the unedited model is measured at 2 cases only (its 1-case measure is the checkpoint's), then each new run once
    assert measured_sizes == [2, 1, 2, 2]
    assert [(r["method"], r["n_edits"]) for r in resumed.runs] == [("kn", 1), ("kn", 2), ("ft", 1), ("ft", 2)]
    # the checkpoint's run is kept, not measured again (its wall time would differ)
    assert resumed.runs[2] == first.runs[0]
    assert ScalingResult.load(checkpoint).runs == resumed.runs
    with pytest.raises(InvalidRequestError, match="other settings"):
        run_scaling(model, records, ["ft"], [1], fluency_cases=2, fluency_tokens=3, progress=False, checkpoint=checkpoint)
