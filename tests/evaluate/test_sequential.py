"""Sequential editing on the bundled fact model: one row per batch, the model restored, perplexity
against the Hugging Face loss."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench.edit.finetune import FineTuneHyperParams
from workbench.errors import InvalidRequestError
from workbench.evaluate.metrics import case_metrics, summarize, without_edited_neighbours
from workbench.evaluate.sequential import SequentialResult, perplexity, run_sequential
from workbench.zoo.benchmark import benchmark

TEXTS = ["Paris is the capital of France.", "The river flows through the old town and into the sea."]


@pytest.fixture(scope="module")
def model():
    return workbench.load_model()


def test_perplexity_is_the_exponentiated_language_modelling_loss(model):
    expected = []
    for text in TEXTS:
        ids = torch.tensor([model.tokenizer(text)["input_ids"]])
        with torch.no_grad():
            loss = model.original_model(ids, labels=ids).loss  # mean NLL over the text's predicted tokens
        expected.append((float(loss), ids.shape[1] - 1))
    pooled = math.exp(sum(loss * n for loss, n in expected) / sum(n for _, n in expected))
    assert perplexity(model, TEXTS) == pytest.approx(pooled, rel=1e-4)


def test_sequential_rows_per_batch_and_the_model_restored(model, tmp_path):
    records = benchmark("factgpt", 6)
    before = snapshot(model)
    result = run_sequential(model, records[:4], "ft", batch_size=2, fresh=records[4:], held_out=TEXTS,
                            fluency_cases=2, fluency_tokens=4, progress=False, layer=1)
    assert changed(model, before) == set()
    assert [row["edits"] for row in result.rows] == [0, 2, 4]
    # unconstrained fine-tuning flips the facts it is given (ROME's FT baseline: ES 100)
    assert result.rows[0]["edited"]["efficacy_score"] < 100 and result.rows[-1]["edited"]["efficacy_score"] == 100
    assert result.rows[0]["perplexity"] == pytest.approx(perplexity(model, TEXTS))
    reloaded = SequentialResult.load(result.save(tmp_path / "sequential.json"))
    assert reloaded.rows == result.rows and "fresh NS" in reloaded.table()
    assert reloaded.settings["hparams_in_effect"] == dataclasses.asdict(FineTuneHyperParams())  # factgpt: untuned


def test_a_sampled_run_scores_the_first_cases_of_every_batch_so_far(model, tmp_path):
    records = benchmark("factgpt", 6)
    edited, fresh = records[:4], records[4:]
    kept, _ = without_edited_neighbours(edited, [case.requested_rewrite.subject for case in edited])
    unedited_first = summarize(case_metrics(model, kept[:1], free_generation=True))
    saved = []
    result = run_sequential(model, edited, "ft", batch_size=2, fresh=fresh, held_out=TEXTS, fluency_tokens=0,
                            scored_per_batch=1, after_batch=lambda partial: saved.append(len(partial.rows)),
                            progress=False, layer=1)
    assert [row["scored_cases"] for row in result.rows] == [1, 1, 2]  # cases 0; 0; 0 and 2
    assert result.rows[0]["edited"] == unedited_first
    assert result.rows[-1]["edited"]["efficacy_score"] == 100
    assert saved == [2, 3]  # called after each batch with the rows so far


def test_measuring_every_other_batch_keeps_the_last(model):
    records = benchmark("factgpt", 7)
    result = run_sequential(model, records[:5], "ft", batch_size=1, fresh=records[5:], held_out=TEXTS,
                            fluency_tokens=0, free_generation=False, measure_every=2, progress=False, layer=1)
    assert [row["edits"] for row in result.rows] == [0, 2, 4, 5]
    assert all(row["edit_seconds"] > 0 for row in result.rows[1:])


def test_sequential_needs_fresh_cases_and_held_out_text(model):
    records = benchmark("factgpt", 2)
    with pytest.raises(InvalidRequestError, match="fresh"):
        run_sequential(model, records, "ft", batch_size=1, fresh=[], held_out=TEXTS, progress=False)
    with pytest.raises(InvalidRequestError, match="scored_per_batch"):
        run_sequential(model, records, "ft", batch_size=1, fresh=records, held_out=TEXTS, scored_per_batch=0,
                       progress=False)


def test_the_sequential_figure_has_a_labelled_panel_per_metric(model):
    from workbench.evaluate.metric_table import METRICS
    from workbench.plot.sequential import PANELS

    rows = [{"edits": n, "edited": {"efficacy_score": 50.0 * n, "paraphrase_score": 40.0, "neighborhood_score": 90.0},
             "fresh_neighborhood": 95.0, "perplexity": 15.0 + n, "fluency": 4.3, "edit_seconds": 1.0} for n in (0, 1, 2)]
    figure = SequentialResult(method="memit", batch_size=1, rows=rows).plot()
    axes = figure.axes
    assert [ax.get_title() for ax in axes] == [METRICS[key].label for key in PANELS]
    assert all(ax.get_xlabel() == "edits so far" and ax.get_ylabel() for ax in axes)
    assert list(axes[0].lines[0].get_ydata()) == [0.0, 50.0, 100.0]
    assert list(axes[4].lines[0].get_ydata()) == [15.0, 16.0, 17.0]
