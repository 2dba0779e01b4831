"""Sweeps on Ray workers equal the single-process sweep, survive a killed worker, and refuse a
model the workers cannot load as it is."""
from __future__ import annotations

import contextlib
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch

import workbench
from workbench.edit.session import EditResult
from workbench.edit.stats import using_corpus
from workbench.engines import RayEngine
from workbench.errors import InvalidRequestError
from workbench.families import mlp_out_projection
from workbench.evaluate.bench import run_bench
from workbench.evaluate.layer_sweep import sweep_edit_layers
from workbench.evaluate.scaling import ScalingResult, run_scaling
from workbench.locate.effects import trace_many
from workbench.models import record_of
from workbench.zoo.benchmark import benchmark

ray = pytest.importorskip("ray")
SETTINGS = {"kinds": ("hidden", "mlp"), "samples": 2, "progress": False}


@pytest.fixture(scope="module")
def model():
    return workbench.load_model("factgpt")


@pytest.fixture(scope="module")
def engine():
    engine = RayEngine(workers=2)
    yield engine
    engine.shutdown()
    ray.shutdown()


@pytest.fixture(scope="module")
def facts(model):
    return record_of(model).known_facts(6)


@pytest.fixture(scope="module")
def single_process(model, facts):
    return trace_many(model, facts, **SETTINGS)


def _assert_same(merged, expected):
    assert merged.counts == expected.counts and merged.n_facts == expected.n_facts
    for kind in expected.kinds:
        np.testing.assert_allclose(merged.effects[kind], expected.effects[kind], atol=1e-6)
    assert merged.clean_prob == pytest.approx(expected.clean_prob, abs=1e-6)
    assert merged.corrupted_prob == pytest.approx(expected.corrupted_prob, abs=1e-6)


def test_two_workers_give_the_single_process_result(model, engine, facts, single_process):
    _assert_same(trace_many(model, facts, engine=engine, **SETTINGS), single_process)
    assert len(engine.pids_seen) == 2  # both workers took facts


@pytest.mark.slow  # 17 s on 2 cores (a worker restarts and reloads the model); the two-worker path runs by default
def test_a_worker_killed_mid_sweep_is_restarted_and_the_sweep_completes(model, engine, facts, single_process):
    pids = engine.start(model)
    engine.pids_seen.clear()
    outcome = {}
    sweep = threading.Thread(target=lambda: outcome.update(result=trace_many(model, facts, engine=engine, **SETTINGS)))
    sweep.start()
    while not engine.pids_seen and sweep.is_alive():  # the sweep is under way once a first fact is back
        time.sleep(0.01)
    os.kill(pids[0], signal.SIGKILL)
    sweep.join(timeout=600)
    _assert_same(outcome["result"], single_process)
    restarted = set(engine.start(model)) - set(pids)
    assert len(restarted) == 1 and restarted <= engine.pids_seen  # the new worker ran the lost facts


def test_a_model_edited_in_memory_is_refused(model, engine, facts):
    projection = mlp_out_projection(model, 2)
    with EditResult(model, "by hand", []) as edited:
        edited.apply_delta(projection.name, torch.full_like(projection.weight, 1e-3))
        with pytest.raises(InvalidRequestError, match="differs from the model given"):
            trace_many(model, facts[:2], engine=engine, **SETTINGS)


def test_a_bench_on_two_workers_gives_the_single_process_metrics(model, engine):
    cases = benchmark("factgpt", 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(engine.threads)  # fine-tuning's rounding depends on the thread count: the workers'
    try:
        local = run_bench(model, cases, "ft", fluency_tokens=5, progress=False)
    finally:
        torch.set_num_threads(threads)
    remote = run_bench(model, cases, "ft", fluency_tokens=5, progress=False, engine=engine)
    assert remote.layers == local.layers
    for on_workers, here in zip(remote.cases, local.cases):
        for key, value in here.items():
            if key != "edit_seconds":
                assert on_workers[key] == pytest.approx(value, abs=1e-6), key


def test_a_corpus_set_here_is_refused_on_workers(model, engine, facts):
    with using_corpus(["A short text about nothing."], "one-line"):
        with pytest.raises(InvalidRequestError, match="does not reach Ray workers"):
            trace_many(model, facts[:2], engine=engine, **SETTINGS)


@contextlib.contextmanager
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _assert_close(found, expected, where=""):
    """Nested dicts and lists equal, numbers to 1e-6."""
    if isinstance(expected, dict):
        assert found.keys() == expected.keys(), where
        for key in expected:
            _assert_close(found[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert len(found) == len(expected), where
        for index, (a, b) in enumerate(zip(found, expected)):
            _assert_close(a, b, f"{where}[{index}]")
    else:
        assert found == pytest.approx(expected, abs=1e-6), where


@pytest.mark.slow  # 47 s on 2 cores; run_bench's engine path is checked in the default run
def test_a_scaling_study_on_two_workers_gives_the_single_process_runs(model, engine, tmp_path):
    cases = benchmark("factgpt", 3)
    settings = {"mode": "sequential", "fluency_cases": 2, "fluency_tokens": 5, "progress": False}
    with one_thread():  # as each worker: fine-tuning steps amplify the rounding of other thread counts
        local = run_scaling(model, cases, ["ft", "caching"], [1, 3], **settings)
    checkpoint = tmp_path / "scaling.json"
    remote = run_scaling(model, cases, ["ft", "caching"], [1, 3], engine=engine, checkpoint=checkpoint, **settings)
    assert [(run["method"], run["n_edits"]) for run in remote.runs] == [("ft", 1), ("ft", 3), ("caching", 1), ("caching", 3)]
    timing = ("edit_seconds", "peak_mb")
    _assert_close([{k: v for k, v in run.items() if k not in timing} for run in remote.runs],
                  [{k: v for k, v in run.items() if k not in timing} for run in local.runs])
    assert len(ScalingResult.load(checkpoint).runs) == 4  # saved as the runs came back from the workers


@pytest.mark.slow  # a thin pass-through to run_bench, whose engine path the default run checks
def test_an_edit_layer_sweep_on_two_workers_gives_the_single_process_scores(model, engine):
    cases = benchmark("factgpt", 2)
    with one_thread():
        local = sweep_edit_layers(model, cases, [1, 3], "ft", progress=False)
    remote = sweep_edit_layers(model, cases, [1, 3], "ft", progress=False, engine=engine)
    _assert_close(remote.scores, local.scores)
    _assert_close(remote.unedited, local.unedited)


def test_bad_worker_resources_are_refused():
    with pytest.raises(InvalidRequestError, match="gpus_per_worker"):
        RayEngine(workers=1, gpus_per_worker=-1)
    assert RayEngine(workers=1, gpus_per_worker=0.5).load_options == {"device": "cuda"}
    placed = RayEngine(workers=1, gpus_per_worker=1, load_options={"device_map": "auto"})
    assert placed.load_options == {"device_map": "auto"}  # the caller's placement is kept
