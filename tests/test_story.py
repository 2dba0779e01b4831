"""The main job (`make run`): the story runs end to end, prints every step, writes its figures and
reports the ROME edit undone bit-exactly. On factgpt, scaled down (few facts, few edits), in the
default run; on smollm2-135m at full size, marked slow: there the edits must work."""
from __future__ import annotations

from dataclasses import replace

import matplotlib
import pytest

matplotlib.use("Agg")

from workbench.story import SCRIPTS, run_story  # noqa: E402

FIGURES = ("causal_trace", "average_indirect_effect", "knowledge_neurons")
SCORES = ("Efficacy Score", "Paraphrase Score", "Neighborhood Score", "Score")


def _check_every_step(printed: str, out, model_name: str, outcome: dict) -> None:
    for step in range(1, 7):
        assert f"== {step}. " in printed, f"step {step} missing from the summary"
    for name in FIGURES:
        assert (out / f"story_{model_name}_{name}.png").stat().st_size > 10_000, f"{name} not written"
    assert outcome["rome"]["restored"]
    assert "every weight bit-identical to the original: True" in printed
    for label in SCORES:
        assert f"\n{label} " in printed, f"no {label} row in MEMIT's table"
    assert f"figures: {out.resolve()}" in printed


def test_story_on_factgpt_tells_every_step_and_restores_the_model(tmp_path, capsys, monkeypatch):
    # scaled down for the default run: 2 noise samples, 6 traced facts, 4 edits
    monkeypatch.setitem(SCRIPTS, "factgpt", replace(SCRIPTS["factgpt"], trace_samples=2))
    outcome = run_story("factgpt", out=tmp_path, n_facts=6, n_edits=4)
    _check_every_step(capsys.readouterr().out, tmp_path, "factgpt", outcome)


@pytest.mark.slow
def test_story_on_smollm2_rewrites_the_fact_and_spares_the_neighbours(tmp_path, capsys):
    outcome = run_story("smollm2-135m", out=tmp_path)
    _check_every_step(capsys.readouterr().out, tmp_path, "smollm2-135m", outcome)
    script = SCRIPTS["smollm2-135m"]
    top_after = outcome["rome"]["top_after"]
    new, true = script.rewrite.target_new, script.rewrite.target_true
    assert top_after[script.rewrite.filled_prompt()] == new
    assert any(top_after[prompt] == new for prompt in script.paraphrases)
    assert all(top_after[prompt] == true for prompt in script.neighbours)
    unedited, edited = outcome["memit"]["unedited"], outcome["memit"]["edited"]
    assert edited["efficacy_score"] >= unedited["efficacy_score"] + 50
    assert edited["paraphrase_score"] >= unedited["paraphrase_score"] + 40
