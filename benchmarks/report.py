"""The benchmarks' common ending: print the report as JSON and, when asked, write it to a file.

The scripts run as ``python benchmarks/<name>.py``, which puts this folder on ``sys.path``, so they
import it as ``from report import emit``.
"""
from __future__ import annotations

import json
from pathlib import Path


def emit(report: dict, out: str | None) -> None:
    """Print ``report`` as indented JSON; also write it to ``out`` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        Path(out).write_text(text + "\n")
