"""Shared fixtures: no network for any test, headless plotting, tiny models of every family."""
from __future__ import annotations

import ipaddress
import os
import socket
import tempfile

import matplotlib
import pytest

# Caches written by the code under test (second moments, edit layers) go to a fresh directory.
os.environ["WORKBENCH_CACHE"] = tempfile.mkdtemp(prefix="workbench-test-cache-")

matplotlib.use("Agg")

FAMILIES = ("gpt2", "gpt-neox", "gpt-j", "llama", "gemma3")


class NetworkBlockedError(RuntimeError):
    """Raised when a test tries to reach a host other than this machine."""


def _is_loopback(host: object) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


def _guarded(original):
    def connect(self, address, *args, **kwargs):
        if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            raise NetworkBlockedError(f"test tried to connect to {address!r}; tests run offline")
        return original(self, address, *args, **kwargs)

    return connect


def _guarded_getaddrinfo(original):
    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            raise NetworkBlockedError(f"test tried to resolve {host!r}; tests run offline")
        return original(host, *args, **kwargs)

    return getaddrinfo


@pytest.fixture(autouse=True, scope="session")
def block_network():
    """Every test runs with connections to other hosts refused (loopback stays open for kernels)."""
    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "connect", _guarded(socket.socket.connect))
    patch.setattr(socket.socket, "connect_ex", _guarded(socket.socket.connect_ex))
    patch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo(socket.getaddrinfo))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict:
    """A saved, randomly initialised tiny model directory per supported family."""
    from workbench.zoo.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("tiny-models")
    return {family: build_tiny_model(family, root / family) for family in FAMILIES}


@pytest.fixture
def editing_corpus():
    """ROME's and MEMIT's statistics corpus for the tiny models: the bundled fact model's training
    sentences (varied enough for a full-rank second moment at every layer)."""
    from workbench.edit.stats import using_corpus
    from workbench.zoo.records import RECORDS

    with using_corpus(RECORDS["factgpt"].corpus_texts(), "factgpt-training"):
        yield
