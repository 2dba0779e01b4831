"""``workbench calibrate``: bad input refused with the model untouched; a full calibration of the
bundled fact model on its own knowledge base, checked against what is known of it independently."""
from __future__ import annotations

import time

import pytest

import workbench
from workbench import calibration
from workbench.calibration import ROME_BOUNDS, _Budget, _tightening_bounds
from workbench.errors import TooFewKnownFactsError
from workbench.models import cache_root, record_of
from workbench.settings import read_settings
from workbench.zoo.knowledge import FACTS_PATH


def test_a_model_that_knows_too_few_facts_is_refused_and_left_as_it_was(tiny_model_dirs, tmp_path):
    model = workbench.load_model(tiny_model_dirs["llama"])
    tokenizer = model.tokenizer
    with pytest.raises(TooFewKnownFactsError, match="--facts"):
        workbench.calibrate(model, output=tmp_path / "settings", progress=False)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    assert model.tokenizer is tokenizer and model.workbench_settings is None and record_of(model) is None


def test_the_budget_skips_a_grid_point_predicted_to_end_past_it():
    budget = _Budget(seconds=100.0, started=time.perf_counter() - 50.0)  # 50 s spent
    budget.last_point["memit"] = 30.0
    assert budget.refusal("memit", 1.0, first=False) is None  # ends at 80 s
    assert "predicted to end at 110 s" in budget.refusal("memit", 2.0, first=False)  # two passes: 50 + 60
    assert budget.refusal("memit", 2.0, first=True) is None  # a grid's first point always runs
    assert budget.refusal("alphaedit", 1.0, first=False) is None  # nothing measured to predict from
    unlimited = _Budget(seconds=None, started=time.perf_counter() - 1e6)  # the default: every point runs
    unlimited.last_point["memit"] = 1e6
    assert unlimited.refusal("memit", 2.0, first=False) is None


@pytest.mark.parametrize(("scores", "tried"), [
    ((90.0, 95.0, 96.0, 89.0, 99.0), 4),  # rises twice, then falls: stops there, 0.5 is best
    ((97.0, 97.0, 99.0, 99.0, 99.0), 2),  # a tie is no better: the paper's bound is kept
    ((90.0, 91.0, 92.0, 93.0, 94.0), 5),  # rises to the tightest bound
])
def test_rome_bounds_are_tightened_while_the_score_rises(monkeypatch, scores, tried):
    measured = []

    def scored_point(model, cases, method, layer, settings, budget, first):
        measured.append(settings["clamp_norm_factor"])
        return {"settings": settings, "score": scores[len(measured) - 1]}

    monkeypatch.setattr(calibration, "_bench_point", scored_point)
    rows = _tightening_bounds(None, [], 0, {"prefixes": ()}, _Budget(seconds=None, started=time.perf_counter()))
    assert measured == list(ROME_BOUNDS[:tried])
    best = max(range(tried), key=lambda i: (scores[i], -i))
    assert calibration._best(rows)["clamp_norm_factor"] == ROME_BOUNDS[best]


def test_a_skipped_rome_bound_ends_the_tightening(monkeypatch):
    def point(model, cases, method, layer, settings, budget, first):
        return {"settings": settings, "score": 90.0} if first else {"settings": settings, "skipped": "time budget"}

    monkeypatch.setattr(calibration, "_bench_point", point)
    rows = _tightening_bounds(None, [], 0, {}, _Budget(seconds=1.0, started=time.perf_counter()))
    assert len(rows) == 2 and "skipped" in rows[1]


@pytest.mark.slow
def test_calibrating_factgpt_on_its_knowledge_base(tmp_path):
    """factgpt was trained on facts.jsonl with a <|endoftext|> before every sentence: calibration must
    find that prefix, know most taught facts, and write settings that load_model applies."""
    model = workbench.load_model("factgpt", settings=False)
    settings = workbench.calibrate(model, facts=FACTS_PATH, budget_seconds=60, output=tmp_path / "s", progress=False)
    content = settings.content
    assert settings.prefix == "<|endoftext|>"
    assert content["facts"]["known"] >= 0.8 * content["facts"]["candidates"]
    sweep = content["layers"]["sweep"]
    assert sweep["scores"][str(sweep["best_layer"])]["score"] == max(row["score"] for row in sweep["scores"].values())
    assert read_settings(tmp_path / "s").content == content
    reloaded = workbench.load_model("factgpt", settings=tmp_path / "s")
    assert record_of(reloaded).editor_settings["rome"]["layer"] == content["layers"]["sweep"]["best_layer"]
    assert not (cache_root() / "settings").exists() or not any((cache_root() / "settings").iterdir())
