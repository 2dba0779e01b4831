"""CounterFact's probability metrics (Meng et al. 2022, "Locating and Editing Factual
Associations in GPT", section 3 and appendix): efficacy, paraphrase and neighbourhood scores
and magnitudes, and their harmonic mean.

A *score* is the share of prompts where one target beats the other; a *magnitude* is the mean
difference of their probabilities. Rewrite and paraphrase prompts should prefer ``target_new``;
neighbourhood prompts (other subjects with the same true object) should keep ``target_true``.
Token-level accuracy (all target tokens argmax under teacher forcing), which some toolkits report
under the same names, is given beside them as ``*_token_accuracy``.

Limits: fluency and consistency need generations and are not computed here.
"""
from __future__ import annotations

from collections.abc import Sequence
from statistics import harmonic_mean

from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.evaluate.probabilities import score_targets


def counterfact_scores(model: TransformerBridge, records: Sequence[CounterFactRecord]) -> dict[str, float]:
    """Efficacy, Paraphrase and Neighborhood Score and Magnitude, and Score, as percentages/probabilities.

    Every prompt of every record is scored with both targets in a few batched passes.
    """
    groups: dict[str, list[tuple[str, str, str]]] = {"efficacy": [], "paraphrase": [], "neighborhood": []}
    for record in records:
        request = record.requested_rewrite
        if request.target_true is None:
            raise ValueError(f"case {record.case_id} has no target_true; CounterFact metrics need one")
        pair = (request.target_new, request.target_true)
        groups["efficacy"].append((request.filled_prompt(), *pair))
        groups["paraphrase"].extend((p, *pair) for p in record.paraphrase_prompts)
        groups["neighborhood"].extend((p, *pair) for p in record.neighborhood_prompts)
    result: dict[str, float] = {}
    for name, rows in groups.items():
        if not rows:
            continue
        prompts = [p for p, _, _ in rows]
        new = score_targets(model, prompts, [n for _, n, _ in rows])
        true = score_targets(model, prompts, [t for _, _, t in rows])
        p_new, p_true = new.log_prob.exp(), true.log_prob.exp()
        wins = p_true > p_new if name == "neighborhood" else p_new > p_true
        margin = p_true - p_new if name == "neighborhood" else p_new - p_true
        result[f"{name}_score"] = 100 * wins.float().mean().item()
        result[f"{name}_magnitude"] = margin.mean().item()
        expected = true if name == "neighborhood" else new
        result[f"{name}_token_accuracy"] = 100 * expected.token_accuracy.mean().item()
    parts = [result.get(f"{n}_score") for n in groups]
    if all(p is not None for p in parts):
        result["score"] = harmonic_mean(parts)
    return result


