"""The one table of metrics: every metric a result reports is in it, and the docs list it as the code does."""
from __future__ import annotations

from pathlib import Path

from workbench.evaluate.bench import SUMMARY_KEYS
from workbench.evaluate.metric_table import METRICS, short_name
from workbench.evaluate.sequential import SCORES
from workbench.plot.editing import BAR_METRICS
from workbench.plot.scaling import PANELS as SCALING_PANELS
from workbench.plot.sequential import PANELS as SEQUENTIAL_PANELS

DOC = Path(__file__).resolve().parents[2] / "docs" / "concepts" / "counterfact-metrics.md"


def test_every_metric_shown_anywhere_is_in_the_table():
    shown = {*SUMMARY_KEYS, *SCORES, *BAR_METRICS, *SCALING_PANELS, *SEQUENTIAL_PANELS}
    assert shown <= set(METRICS)
    assert len({metric.short for metric in METRICS.values()}) == len(METRICS)  # short names tell them apart
    assert short_name("edit_seconds") == "edit_seconds" and short_name("score") == "S"


def test_the_docs_table_lists_every_metric_as_the_code_defines_it():
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `"):
            cells = [cell.strip() for cell in line.strip("|").split("|")]
            rows[cells[0].strip("`")] = cells
    assert set(rows) == set(METRICS)
    for key, metric in METRICS.items():
        _, short, label, definition, better, unit, paper = rows[key]
        assert (short, label, definition, paper) == (metric.short, metric.label, metric.definition, metric.paper)
        assert better == ("higher" if metric.higher_is_better else "lower") and unit == (metric.unit or "-")
