"""Peak memory of a block of work: the process's resident memory on a CPU, allocated memory on CUDA."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import torch


def _resident_bytes() -> int:
    """Resident set size of this process (Linux ``/proc``; 0 where unavailable)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.megabytes``: the highest resident memory of
    the process while the block ran (sampled every ``interval`` seconds), or the peak CUDA
    allocation when ``device`` is a CUDA device. Resident memory includes what the process held
    before the block, so compare runs of one process, not absolute numbers across machines."""

    def __init__(self, device: torch.device | str = "cpu", interval: float = 0.05) -> None:
        self.device = torch.device(device)
        self.interval = interval
        self.megabytes = 0.0
        self.megabytes_above_start = 0.0
        """The peak less what the process held on entry (memory freed earlier but kept by the
        allocator is reused first, so this can under-count after other work)."""
        self._start = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, _resident_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            self._peak = self._start = _resident_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if self.device.type == "cuda":
            self.megabytes = torch.cuda.max_memory_allocated(self.device) / 2**20
            self.megabytes_above_start = self.megabytes - self._start / 2**20
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._peak = max(self._peak, _resident_bytes())
        self.megabytes = self._peak / 2**20
        self.megabytes_above_start = (self._peak - self._start) / 2**20
