"""Where a sweep's independent pieces of work run: in this process, or on Ray workers.

Sweeps over many facts or cases (:func:`workbench.locate.effects.trace_many`) split into
independent *items*, each a call ``work(model, item)``. An engine runs those calls and returns
their results in the items' order; the sweep merges them exactly as if it had run them itself.

* :class:`LocalEngine` (the default): one after another, in this process, on the caller's model.
* :class:`RayEngine`: on ``workers`` Ray actors, each loading the model once (a bundled model by its
  name, any other from the directory it was loaded from), on a local Ray instance started on
  first use or an existing cluster (``address``). A worker that dies is restarted by Ray and its
  unfinished calls run again there (actor restarts and task retries, nothing hand-written), so a
  sweep survives a lost worker. Each worker's weights are checked against the caller's
  (:func:`workbench.edit.stats.weights_fingerprint`): a model edited in memory cannot be loaded
  by name, and is refused rather than silently swept unedited.

Limits: ``work`` and the items travel by pickle (module-level functions, plain data); the model
must be loadable on every worker's machine by the same name or path; Ray is an optional
dependency (``pip install 'workbench[ray]'``).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench.errors import InvalidRequestError

Work = Callable[[TransformerBridge, Any], Any]
"""One item's work: ``(model, item) -> result``; a module-level function (or a ``functools.partial`` of one)."""
OnResult = Callable[[int, Any], None]
"""Called in the caller's process with (item index, result) as each result arrives, e.g. to save progress."""


class LocalEngine:
    """Runs every item in this process, in order, on the caller's model."""

    def map(self, model: TransformerBridge, work: Work, items: Sequence, *, desc: str = "items",
            progress: bool = True, on_result: OnResult | None = None) -> list:
        """``[work(model, item) for item in items]``, with a progress bar."""
        results = []
        for index, item in enumerate(tqdm(items, desc=desc, disable=not progress, unit="item")):
            results.append(work(model, item))
            if on_result is not None:
                on_result(index, results[-1])
        return results


def model_source(model: TransformerBridge) -> str:
    """What a worker loads to get ``model``: a bundled model's name, else the directory it was read from."""
    from workbench.models import record_of

    record = record_of(model)
    if record is not None:
        return record.name
    source = getattr(model.original_model.config, "_name_or_path", "")
    if not source:
        raise InvalidRequestError("this model was not loaded from a name or directory, so workers cannot load it; "
                                  "save it with workbench.save_model and load it from there")
    return source


class _Worker:
    """A Ray actor's state: one loaded model."""

    def __init__(self, source: str, threads: int, load_options: dict) -> None:
        import torch

        from workbench.models import load_model

        torch.set_num_threads(threads)
        self.model = load_model(source, **load_options)

    def fingerprint(self) -> str:
        from workbench.edit.stats import weights_fingerprint

        return weights_fingerprint(self.model)

    def pid(self) -> int:
        return os.getpid()

    def run(self, work: Work, item: Any) -> tuple[int, Any]:
        """The item's result, with the process that computed it (a restarted worker is a new process)."""
        return os.getpid(), work(self.model, item)


class RayEngine:
    """Runs items on ``workers`` Ray actors, each holding one copy of the model.

    Args:
        workers: actors to start (each loads the model once, then takes its share of the items).
        address: an existing Ray cluster (``"ray://host:10001"`` or ``"auto"``); ``None`` starts a
            local instance on this machine (or uses the one already running in this process).
        threads_per_worker: torch threads (and Ray CPUs) per actor.
        gpus_per_worker: GPUs Ray reserves for each actor (a fraction shares one GPU among several
            actors); with any, a worker loads its model on ``"cuda"`` (Ray sets each actor's
            ``CUDA_VISIBLE_DEVICES``) unless ``load_options`` places it otherwise.
        load_options: keyword arguments of :func:`workbench.models.load_model` for the workers,
            e.g. ``{"device_map": "auto", "max_memory": {...}}`` for a model spread over a worker's GPUs.
            The workers' weights must still equal the caller's (same dtype, no edit in memory).

    ``pids_seen`` collects the worker processes that returned results. Tested on CPU workers only;
    GPU reservations follow Ray's documented ``num_gpus`` semantics.
    """

    def __init__(self, workers: int = 2, address: str | None = None, threads_per_worker: int = 1,
                 gpus_per_worker: float = 0, load_options: dict | None = None) -> None:
        if workers < 1 or threads_per_worker < 1:
            raise InvalidRequestError(
                f"workers and threads_per_worker must be at least 1, got {workers} and {threads_per_worker}")
        if gpus_per_worker < 0:
            raise InvalidRequestError(f"gpus_per_worker must not be negative, got {gpus_per_worker}")
        self.workers, self.address, self.threads = workers, address, threads_per_worker
        self.gpus = gpus_per_worker
        self.load_options = dict(load_options or {})
        if self.gpus and not {"device", "device_map"} & self.load_options.keys():
            self.load_options["device"] = "cuda"
        self.pids_seen: set[int] = set()
        self._actors: list = []
        self._source: str | None = None
        self._fingerprints: set[str] = set()

    def start(self, model: TransformerBridge) -> list[int]:
        """Start the actors for ``model`` (once per model source) and return their process ids.

        Raises:
            InvalidRequestError: Ray is not installed, the workers' model differs from ``model``, or a
                statistics corpus is set with :func:`workbench.edit.stats.using_corpus` (workers would
                not see it).
        """
        from workbench.edit.stats import active_corpus, weights_fingerprint

        if active_corpus() is not None:
            raise InvalidRequestError(f"a statistics corpus set with using_corpus ({active_corpus()[0]!r}) does not reach "
                                      "Ray workers; run locally, or use the model's own corpus")
        ray = _ray()
        source, expected = model_source(model), weights_fingerprint(model)
        if not self._actors or source != self._source:
            self.shutdown()
            if not ray.is_initialized():
                os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a local instance reports nothing home
                local = {"num_cpus": self.workers * self.threads, "_node_ip_address": "127.0.0.1"}
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         **({} if self.address else local))
            actor = ray.remote(num_cpus=self.threads, num_gpus=self.gpus, max_restarts=-1, max_task_retries=-1)(_Worker)
            self._actors = [actor.remote(source, self.threads, self.load_options) for _ in range(self.workers)]
            self._source = source
            self._fingerprints = set(ray.get([a.fingerprint.remote() for a in self._actors]))
        if self._fingerprints != {expected}:
            raise InvalidRequestError(f"the workers' {source!r} differs from the model given (edited in memory?); "
                                      "save the model and load it from its directory, or run locally")
        return ray.get([actor.pid.remote() for actor in self._actors])

    def map(self, model: TransformerBridge, work: Work, items: Sequence, *, desc: str = "items",
            progress: bool = True, on_result: OnResult | None = None) -> list:
        """``[work(model, item) for item in items]`` computed on the workers, in the items' order."""
        ray = _ray()
        self.start(model)
        pending = {self._actors[i % len(self._actors)].run.remote(work, item): i for i, item in enumerate(items)}
        results: list = [None] * len(items)
        with tqdm(total=len(items), desc=f"{desc} ({len(self._actors)} workers)", disable=not progress,
                  unit="item") as bar:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                index = pending.pop(done[0])
                pid, results[index] = ray.get(done[0])
                self.pids_seen.add(pid)
                bar.update(1)
                if on_result is not None:
                    on_result(index, results[index])
        return results

    def shutdown(self) -> None:
        """Stop the actors (the Ray instance stays up for the next engine)."""
        for actor in self._actors:
            _ray().kill(actor)
        self._actors, self._source, self._fingerprints = [], None, set()


def _ray():
    try:
        import ray
    except ImportError as error:
        raise InvalidRequestError("the Ray engine needs Ray: pip install 'workbench[ray]'") from error
    return ray
