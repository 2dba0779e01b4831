"""The edit layer measured by editing: the same cases edited at every candidate layer, Score per layer.

Causal tracing recommends the layer whose MLP output matters most at the subject's last token
(Meng et al. 2022); Hase et al. (2023, "Does Localization Inform Editing?") found that this layer
and the layer where edits succeed best often disagree. :func:`sweep_edit_layers` measures the
second directly: every case is edited independently at each layer (the bench runner), and the
CounterFact Score (harmonic mean of ES, PS, NS) says which layer edits best.

Limits: the cost is (layers x cases) edits; run it on a tuning split, never on the cases the result
is reported on.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tqdm.auto import tqdm
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.engines import LocalEngine, RayEngine
from workbench.errors import InvalidRequestError
from workbench.evaluate.bench import run_bench
from workbench.evaluate.metrics import remembering_unedited_metrics
from workbench.results import JsonResult

REPORTED = ("efficacy_score", "paraphrase_score", "neighborhood_score", "score")


@dataclass(repr=False)
class LayerSweep(JsonResult):
    """CounterFact scores of one method at each candidate layer, on the same cases."""

    method: str
    layers: list[int]
    scores: dict
    """layer (as a string, for JSON) -> {metric: value} for the metrics in :data:`REPORTED`."""
    unedited: dict
    n_cases: int
    edit_seconds: dict

    @property
    def best_layer(self) -> int:
        """The layer with the highest Score (the earliest among ties)."""
        return max(self.layers, key=lambda layer: (self.scores[str(layer)]["score"], -layer))

    def table(self) -> str:
        """One line per layer: ES, PS, NS, Score and seconds per edit."""
        lines = [f"{'layer':>5} {'ES':>6} {'PS':>6} {'NS':>6} {'S':>6} {'s/edit':>7}"]
        for layer in self.layers:
            row = self.scores[str(layer)]
            lines.append(f"{layer:>5} " + " ".join(f"{row[k]:>6.1f}" for k in REPORTED)
                         + f" {self.edit_seconds[str(layer)]:>7.2f}")
        return "\n".join(lines)


def sweep_edit_layers(
    model: TransformerBridge,
    records: Sequence[CounterFactRecord],
    layers: Sequence[int],
    method: str = "rome",
    *,
    progress: bool = True,
    engine: LocalEngine | RayEngine | None = None,
    **hparams,
) -> LayerSweep:
    """Edit every record independently at each of ``layers`` and score it (no fluency).

    ``engine`` spreads each layer's cases over workers (:mod:`workbench.engines`, as :func:`run_bench`)."""
    if not layers:
        raise InvalidRequestError("sweep_edit_layers needs at least one layer")
    scores, seconds, unedited = {}, {}, {}
    with remembering_unedited_metrics(model):  # every layer's run measures the same unedited model
        for layer in tqdm(list(layers), desc=f"{method} layer sweep", disable=not progress, unit="layer"):
            result = run_bench(model, records, method, layer=layer, fluency_tokens=0, progress=False,
                               engine=engine, **hparams)
            scores[str(layer)] = {key: result.after[key] for key in REPORTED}
            seconds[str(layer)] = result.edit_seconds
            unedited = {key: result.before[key] for key in REPORTED}
    return LayerSweep(method, list(layers), scores, unedited, len(records), seconds)
