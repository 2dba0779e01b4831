"""Batching rows by length: every row once, shortest first, within both limits."""
from __future__ import annotations

import random

from workbench.tokens import length_batches


def test_length_batches_cover_every_row_once_within_their_limits():
    rng = random.Random(0)
    lengths = [rng.choice([3, 5, 40, 300, 3000]) for _ in range(500)]
    batches = length_batches(lengths, max_rows=64, max_tokens=4096)
    flat = [index for batch in batches for index in batch]
    assert sorted(flat) == list(range(len(lengths)))
    assert [lengths[i] for i in flat] == sorted(lengths)  # similar lengths together
    for batch in batches:
        assert len(batch) <= 64
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 4096
    # a row longer than the budget still gets a batch of its own; short rows fill whole batches
    assert sum(len(b) == 1 for b in batches if lengths[b[0]] == 3000) == lengths.count(3000)
    assert len(batches[0]) == 64


def test_no_rows_give_no_batches():
    assert length_batches([], max_rows=8) == []
