"""The subject match beside SERAC's classifier: running cosines, the fitted threshold, and the routing
it blocks (an input that does not name the edit's subject stays with the base model)."""
from __future__ import annotations

import pytest
import torch

import workbench
from workbench.data import EditRequest
from workbench.edit.scope import ScopeClassifier
from workbench.edit.subject_match import SubjectMatch, _best_threshold, fit_subject_match, token_residuals
from workbench.zoo.benchmark import benchmark

EDIT = EditRequest("The capital of {} is", "France", "Rome", "Paris")


def test_running_match_is_the_best_cosine_of_the_prefix_tokens():
    torch.manual_seed(0)
    match = SubjectMatch(6, layer=1, threshold=0.5)
    match.mean.copy_(torch.randn(6))
    match.std.copy_(torch.rand(6) + 0.5)
    hidden, edits = torch.randn(5, 6), torch.randn(3, 6)
    tokens, special = [0, 11, 12, 0, 13], {0}  # positions 0 and 3 are special
    keys = match.keys(edits)
    got = match.running_match(hidden, tokens, special, keys)
    for position in range(5):
        for edit in range(3):
            cosines = [torch.nn.functional.cosine_similarity((hidden[t] - match.mean) / match.std,
                                                             (edits[edit] - match.mean) / match.std, dim=0)
                       for t in range(position + 1) if tokens[t] not in special]
            expected = max(cosines) if cosines else torch.tensor(-1.0)
            torch.testing.assert_close(got[position, edit], expected, atol=1e-5, rtol=1e-5)


def test_the_threshold_maximises_matched_minus_unmatched_share():
    matched, unmatched = torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0.1, 0.75])
    # a cut at 0.4 keeps 3/3 and 1/2 (J 0.5); one between 0.75 and 0.8 keeps 2/3 and 0/2 (J 0.67)
    threshold, j, shares = _best_threshold(matched, unmatched)
    assert threshold == pytest.approx(0.775) and j == pytest.approx(2 / 3)
    assert shares == {"in_scope_matched": pytest.approx(200 / 3), "neighbours_matched": 0.0}


def test_an_input_that_does_not_name_the_subject_stays_with_the_base_model(tiny_model_dirs, tmp_path):
    """A classifier that puts everything in scope, and a subject match that asks for the edit's own
    key: the edit's prompt (its subject token's residual is the key itself) is routed, a prompt about
    another subject is not."""
    model = workbench.load_model(tiny_model_dirs["llama"])
    classifier = ScopeClassifier(2 * model.cfg.d_model, layer=1, subject_layer=1, subject_threshold=0.999)
    with torch.no_grad():
        classifier.scale.zero_()
        classifier.bias.fill_(20.0)
    folder = str(classifier.save(tmp_path / "scope", model_name="tiny"))
    other = model.tokenizer("The capital of Spain is", return_tensors="pt")["input_ids"]
    own = model.tokenizer(EDIT.filled_prompt(), return_tensors="pt")["input_ids"]
    base_other, base_own = (model(ids, return_type="logits")[0, -1] for ids in (other, own))
    with workbench.edit(model, EDIT, "serac", classifier=folder, check_targets=False) as result:
        assert torch.equal(model(other, return_type="logits")[0, -1], base_other)
        assert result.info["routing"]["subject_not_named"] >= 1
        assert not torch.allclose(model(own, return_type="logits")[0, -1].log_softmax(-1), base_own.log_softmax(-1))
    with workbench.edit(model, EDIT, "serac", classifier=folder, check_targets=False, subject_match=False):
        assert not torch.allclose(model(other, return_type="logits")[0, -1].log_softmax(-1), base_other.log_softmax(-1))


def test_a_fitted_match_separates_held_out_paraphrases_from_neighbours():
    """Fit on factgpt's tuning facts, read on its evaluation facts (other subjects): the prompt and
    its paraphrases name the edit's subject, the neighbours (same relation, another subject) do not."""
    model = workbench.load_model("factgpt")
    match = fit_subject_match(model, benchmark("factgpt", split="tuning")[:100], progress=False)
    held_out = benchmark("factgpt", split="evaluation")[:40]
    keys = match.edit_keys(model, [r.requested_rewrite.filled_prompt() for r in held_out],
                           [r.requested_rewrite.subject for r in held_out])
    special = set(model.tokenizer.all_special_ids)
    named = {True: [], False: []}
    for owner, record in enumerate(held_out):
        groups = ((True, [record.requested_rewrite.filled_prompt(), *record.paraphrase_prompts]),
                  (False, record.neighborhood_prompts))
        for in_scope, prompts in groups:
            rows = [model.tokenizer(p)["input_ids"] for p in prompts]
            for row, hidden in zip(rows, token_residuals(model, rows, [match.layer])):
                best = match.running_match(hidden[match.layer], row, special, keys[owner: owner + 1])[-1, 0]
                named[in_scope].append(bool(best >= match.threshold))
    # measured: 85.4% and 5.6% (a match blind to the subject would give equal shares)
    assert sum(named[True]) / len(named[True]) > 0.75
    assert sum(named[False]) / len(named[False]) < 0.15
