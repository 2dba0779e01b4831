"""The main job (`make run`): the story runs end to end on the bundled model, prints every step,
writes its figures and reports the ROME edit undone bit-exactly. A scaled-down run (few facts,
few edits) keeps it quick."""
from __future__ import annotations

import re

import matplotlib

matplotlib.use("Agg")

from workbench.story import run_story  # noqa: E402

FIGURES = ("story_causal_trace.png", "story_average_indirect_effect.png", "story_knowledge_neurons.png")


def test_story_tells_every_step_and_restores_the_model(tmp_path, capsys):
    run_story(out=tmp_path, n_facts=12, n_edits=4)
    printed = capsys.readouterr().out
    for step in range(1, 7):
        assert f"== {step}. " in printed, f"step {step} missing from the summary"
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 10_000, f"{name} not written"
    # the ROME edit is undone bit-exactly, and the printed claim says so
    assert "every weight bit-identical to the original: True" in printed
    # the MEMIT table reports the three CounterFact scores and Score, before and after
    for label in ("Efficacy Score", "Paraphrase Score", "Neighborhood Score", "Score"):
        assert re.search(rf"^{label}\s+\d+\.\d\s+\d+\.\d", printed, re.MULTILINE), f"no {label} row"
    assert f"figures: {tmp_path.resolve()}" in printed
