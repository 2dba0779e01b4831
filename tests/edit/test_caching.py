"""Caching: exact prompts answered from the memory, everything else as the base model, weights untouched."""
from __future__ import annotations

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench.data import EditRequest
from workbench.edit.intercept import has_rules
from workbench.errors import InvalidRequestError
from workbench.evaluate.fluency import generate
from workbench.probabilities import score_targets
from workbench.tokens import target_ids

EDIT = EditRequest("The capital of {} is", "France", "the city of Lower Saxony", "Paris")
OTHER = EditRequest("The official language of {} is", "Peru", "German", "Spanish")


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["gpt2"])


def _logits(model, prompts):
    """Last-position logits of each prompt, one batch (right-padded)."""
    encoded = [model.tokenizer(p)["input_ids"] for p in prompts]
    width = max(map(len, encoded))
    ids = torch.tensor([e + [0] * (width - len(e)) for e in encoded])
    keep = torch.zeros_like(ids, dtype=torch.bool)
    for row, e in enumerate(encoded):
        keep[row, len(e) - 1] = True
    return model(ids, return_type="logits", logits_to_keep=keep)


def test_the_exact_prompt_gets_the_target_and_other_inputs_the_base_model(model):
    paraphrase, neighbour = "France has as its capital", OTHER.filled_prompt()
    base = _logits(model, [paraphrase, neighbour])
    weights = snapshot(model)
    with workbench.edit(model, EDIT, "caching", check_targets=False) as result:
        edited = score_targets(model, [EDIT.filled_prompt()], [EDIT.target_new]).log_prob
        assert len(target_ids(model, EDIT.target_new)) > 3  # every target token is answered in turn
        assert edited.item() > -1e-3
        assert torch.equal(_logits(model, [paraphrase, neighbour]), base)  # exact: a paraphrase is not matched
        assert changed(model, weights) == set() and result.deltas == {}
    assert not has_rules(model)
    assert torch.equal(_logits(model, [paraphrase, neighbour]), base)


def test_generation_with_a_kv_cache_writes_the_target_after_a_left_padded_prompt(model):
    longer = "Once upon a time there was a very long sentence, and then " + OTHER.filled_prompt()
    n_target = len(target_ids(model, EDIT.target_new))
    with workbench.edit(model, EDIT, "caching", check_targets=False):
        edited, other = generate(model, [EDIT.filled_prompt(), longer], max_new_tokens=n_target + 2)
    base_other = generate(model, [EDIT.filled_prompt(), longer], max_new_tokens=n_target + 2)[1]
    assert edited.startswith(" " + EDIT.target_new)
    assert other == base_other  # the other row of the batch continues as the base model


def _target_log_prob(model, prompt_ids: list[int], target: str) -> float:
    """log p(target | prompt_ids), teacher-forced, from token ids."""
    answer = target_ids(model, target)
    ids = torch.tensor([prompt_ids + answer[:-1]])
    keep = torch.zeros_like(ids, dtype=torch.bool)
    keep[0, len(prompt_ids) - 1 :] = True
    log_probs = model(ids, return_type="logits", logits_to_keep=keep).log_softmax(-1)  # [len(answer), vocab]
    return log_probs[torch.arange(len(answer)), answer].sum().item()


def test_similarity_matches_a_reordering_of_the_prompt_that_exact_matching_misses(model):
    prompt = model.tokenizer(EDIT.filled_prompt())["input_ids"]
    shuffled = prompt[:1] + prompt[1:][::-1] if prompt[0] in model.tokenizer.all_special_ids else prompt[::-1]
    assert shuffled != prompt  # the same tokens in another order: the same bag of embeddings
    with workbench.edit(model, EDIT, "caching", check_targets=False):
        assert _target_log_prob(model, prompt, EDIT.target_new) > -1e-3
        exact = _target_log_prob(model, shuffled, EDIT.target_new)
    with workbench.edit(model, EDIT, "caching", match="similarity", threshold=0.999, check_targets=False):
        similar = _target_log_prob(model, shuffled, EDIT.target_new)
        unrelated = _target_log_prob(model, model.tokenizer(OTHER.filled_prompt())["input_ids"], EDIT.target_new)
    assert similar > -1e-3 and exact < -1.0 and unrelated < -1.0


def test_stacked_caches_answer_until_each_is_restored(model):
    first = workbench.edit(model, EDIT, "caching", check_targets=False)
    second = workbench.edit(model, OTHER, "caching", check_targets=False)
    first.restore()
    both = score_targets(model, [EDIT.filled_prompt(), OTHER.filled_prompt()], [EDIT.target_new, OTHER.target_new])
    assert both.log_prob[0].item() < -1.0 and both.log_prob[1].item() > -1e-3
    second.restore()
    assert not has_rules(model)


@pytest.mark.parametrize("bad", [{"threshold": 0.0}, {"threshold": 1.5}, {"match": "fuzzy"}, {"layer": 1}])
def test_bad_settings_are_refused_with_the_model_untouched(model, bad):
    weights = snapshot(model)
    with pytest.raises(InvalidRequestError):
        workbench.edit(model, EDIT, "caching", check_targets=False, **bad)
    assert not has_rules(model) and changed(model, weights) == set()


def test_a_saved_cache_edit_is_written_again_when_applied(model, tmp_path):
    with workbench.edit(model, EDIT, "caching", check_targets=False) as result:
        folder = result.save(tmp_path / "cached")
    replayed = workbench.load_edit(folder).apply(model)
    try:
        assert score_targets(model, [EDIT.filled_prompt()], [EDIT.target_new]).log_prob.item() > -1e-3
    finally:
        replayed.restore()
    assert not has_rules(model)
