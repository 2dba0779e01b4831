"""Sweeps on Ray workers equal the single-process sweep, survive a killed worker, and refuse a
model the workers cannot load as it is."""
from __future__ import annotations

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
    local = run_bench(model, cases, "ft", fluency_tokens=5, progress=False)
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
