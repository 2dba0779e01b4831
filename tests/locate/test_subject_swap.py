"""Subject-swap patching on the bundled model: plumbing invariants and the refusal without donors."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import workbench
from workbench.errors import InvalidRequestError
from workbench.locate.subject_swap import SubjectSwapResult, donor_subjects, subject_swap
from workbench.zoo.benchmark import benchmark


@pytest.fixture(scope="module")
def model():
    return workbench.load_model()


@pytest.fixture(scope="module")
def swapped(model):
    return subject_swap(model, benchmark("factgpt", 60), progress=False)


def test_donors_hold_the_new_target_under_the_same_prompt():
    records = benchmark("factgpt", 60)
    requests = [record.requested_rewrite for record in records]
    truths = {(request.prompt, request.subject): request.target_true for request in requests}
    donors = donor_subjects(records)
    assert any(donors)
    for record, donor in zip(records, donors):
        if donor is not None:
            request = record.requested_rewrite
            assert donor != request.subject
            assert truths[(request.prompt, donor)] == request.target_new


def test_patching_the_last_token_after_the_last_block_gives_the_donors_answer(swapped):
    # the final residual at the last position fixes the logits: every measured case flips there
    assert swapped.last[-1] == 1.0
    assert swapped.n_cases > 0 and swapped.n_cases + swapped.skipped == 60


def test_shares_are_fractions_per_layer(swapped, model, tmp_path):
    assert swapped.layers == list(range(model.cfg.n_layers + 1))
    for curve in (swapped.subject_last, swapped.last):
        assert curve.shape == (model.cfg.n_layers + 1,) and np.all((0 <= curve) & (curve <= 1))
    again = SubjectSwapResult.load(swapped.save(tmp_path / "swap.json"))
    assert np.array_equal(again.subject_last, swapped.subject_last)
    figure = swapped.plot()
    assert figure.axes[0].get_xlabel() and figure.axes[0].get_ylabel()


def test_records_without_donors_are_refused(model):
    (record,) = benchmark("factgpt", 1)
    lonely = replace(record, requested_rewrite=replace(record.requested_rewrite, target_new="Atlantis"))
    with pytest.raises(InvalidRequestError, match="donor"):
        subject_swap(model, [lonely], progress=False)
