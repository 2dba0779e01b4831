"""SERAC: the base weights never change; in-scope inputs are answered by the base model prompted
with the edit, others by the base model; the scope classifier learns scope and saves/reloads."""
from __future__ import annotations

import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench.data import EditRequest
from workbench.edit.intercept import has_rules, install_rule, remove_rule
from workbench.edit.scope import ScopeClassifier, prefix_features, residual_features, scope_examples, train_scope_classifier
from workbench.edit.serac import SeracHyperParams, SeracMemory
from workbench.errors import InvalidRequestError
from workbench.tokens import pad_left, pad_right
from workbench.zoo.benchmark import benchmark

EDIT = EditRequest("The capital of {} is", "France", "Rome", "Paris")
PROMPTS = ["The capital of France is", "Once upon a time, the capital of France was"]


@pytest.fixture(scope="module")
def model(tiny_model_dirs):
    return workbench.load_model(tiny_model_dirs["llama"])


def _fixed_classifier(model, folder, in_scope: bool) -> str:
    """A classifier that puts every input in scope (or none): scale 0, bias +-20."""
    classifier = ScopeClassifier(2 * model.cfg.d_model, layer=1)
    with torch.no_grad():
        classifier.scale.zero_()
        classifier.bias.fill_(20.0 if in_scope else -20.0)
    return str(classifier.save(folder, model_name="tiny"))


def _last_logits(model, texts):
    return torch.stack([model(model.tokenizer(t, return_tensors="pt")["input_ids"], return_type="logits")[0, -1]
                        for t in texts])


def _trusting_context(prompted, base, weight=SeracHyperParams().context_weight):
    """Context-aware decoding's distribution (Shi et al. 2023), as log-probabilities."""
    return ((1 + weight) * prompted.log_softmax(-1) - weight * base.log_softmax(-1)).log_softmax(-1)


@pytest.mark.parametrize("cache_contexts", [True, False])
def test_in_scope_inputs_get_the_base_model_prompted_with_the_edit(model, tmp_path, cache_contexts):
    weights = snapshot(model)
    base = _last_logits(model, PROMPTS)
    context = f"{EDIT.filled_prompt()} {EDIT.target_new}.\n" * SeracHyperParams().context_repeats
    prompted = _last_logits(model, [context + p for p in PROMPTS])
    everything = _fixed_classifier(model, tmp_path / "all", in_scope=True)
    with workbench.edit(model, EDIT, "serac", classifier=everything, check_targets=False,
                        cache_contexts=cache_contexts, context_weight=0.0):
        torch.testing.assert_close(_last_logits(model, PROMPTS), prompted, atol=1e-4, rtol=1e-4)
    with workbench.edit(model, EDIT, "serac", classifier=everything, check_targets=False,
                        cache_contexts=cache_contexts) as result:
        prompted = _trusting_context(prompted, base)
        torch.testing.assert_close(_last_logits(model, PROMPTS).log_softmax(-1), prompted, atol=1e-4, rtol=1e-4)
        # both prompts in one right-padded batch, read at each one's last token
        ids = [model.tokenizer(p)["input_ids"] for p in PROMPTS]
        batch = pad_right(ids, model.tokenizer.pad_token_id or 0)
        logits = model(batch, return_type="logits")[torch.arange(len(ids)), torch.tensor([len(i) - 1 for i in ids])]
        torch.testing.assert_close(logits.log_softmax(-1), prompted, atol=1e-4, rtol=1e-4)
        assert result.deltas == {} and changed(model, weights) == set()
    nothing = _fixed_classifier(model, tmp_path / "none", in_scope=False)
    with workbench.edit(model, EDIT, "serac", classifier=nothing, check_targets=False):
        assert torch.equal(_last_logits(model, PROMPTS), base)
    assert not has_rules(model) and torch.equal(_last_logits(model, PROMPTS), base)
    assert not torch.allclose(prompted, base)  # the routing is visible


def test_a_pass_fed_a_kv_cache_is_answered_from_the_whole_history(model, tmp_path):
    """One token fed after a cached prompt (as in generation: the classifier's features need an extra
    pass, the counterfactual the whole history) against the base model after the edit's sentence."""
    context = model.tokenizer(f"{EDIT.filled_prompt()} {EDIT.target_new}.\n" * SeracHyperParams().context_repeats)["input_ids"]
    prompt = model.tokenizer(PROMPTS[0])["input_ids"]
    following = torch.tensor([[7]])
    history = context + (prompt[1:] if prompt[0] == model.tokenizer.bos_token_id else prompt) + [7]
    unedited = model(torch.tensor([prompt + [7]]), return_type="logits")[0, -1]
    expected = _trusting_context(model(torch.tensor([history]), return_type="logits")[0, -1], unedited)
    everything = _fixed_classifier(model, tmp_path / "all", in_scope=True)
    with workbench.edit(model, EDIT, "serac", classifier=everything, check_targets=False) as result:
        _, cache = model(torch.tensor([prompt]), return_type="logits_and_cache")
        answered = model(following, return_type="logits", past_key_values=cache)[0, -1]
        real = sum(t not in model.tokenizer.all_special_ids for t in prompt)
        assert result.info["routing"]["routed"] == real + 1  # every position after a real token, then the new token
    torch.testing.assert_close(answered.log_softmax(-1), expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(expected, unedited.log_softmax(-1), atol=1e-3)


@pytest.mark.parametrize("padding", ["right", "left"])
def test_the_classifier_reads_the_answered_pass_as_a_separate_pass_up_to_its_layer(model, padding):
    """Features taken from the recorded residual equal those of :func:`prefix_features` (the pass the
    classifier would otherwise run), for every input of a padded batch."""
    classifier = ScopeClassifier(2 * model.cfg.d_model, layer=1, subject_layer=0)
    memory = SeracMemory(model, [EDIT], classifier, SeracHyperParams(context_repeats=1, cache_contexts=False))
    compared, owner = [], object()
    special = set(model.tokenizer.all_special_ids)

    def spy(rows):
        assert set(rows.residuals) == {0, 1}  # read from the pass, not the fallback
        inputs = list(range(len(rows.inputs)))
        recorded = memory._input_residuals(rows, inputs)
        compared.append(([residual_features(recorded[i][1], rows.inputs[i], special) for i in inputs],
                         prefix_features(model, rows.inputs, classifier.layer)))
        return {}

    install_rule(model, owner, spy, residual_layers=memory.layers)
    encoded = [model.tokenizer(p)["input_ids"] for p in PROMPTS]
    try:
        if padding == "right":
            model(pad_right(encoded, model.tokenizer.pad_token_id or 0), return_type="logits")
        else:
            ids, mask = pad_left(encoded, model.tokenizer.pad_token_id or 0)
            model(ids, return_type="logits", attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp_min(0))
    finally:
        remove_rule(model, owner)
    ((recorded, separate),) = compared
    for index, features in enumerate(separate):
        torch.testing.assert_close(recorded[index], features, atol=1e-5, rtol=1e-5)


@pytest.mark.slow  # 45 s on 2 cores: factgpt features for 80 records, 200 steps
def test_a_trained_classifier_separates_paraphrases_from_neighbours_on_held_out_facts(tmp_path, tiny_model_dirs):
    model = workbench.load_model("factgpt")
    classifier = train_scope_classifier(model, benchmark("factgpt", split="tuning")[:80], steps=200, progress=False)
    held_out = benchmark("factgpt", split="evaluation")[:30]
    examples = scope_examples(model, held_out, classifier.layer, progress=False)
    with torch.no_grad():
        own = classifier.logits(classifier.embed(examples.inputs), classifier.embed(examples.edits))
        own = own[torch.arange(len(examples.owner)), examples.owner].sigmoid()
    routed = own >= 0.5
    assert routed[examples.in_scope].float().mean() > 0.7  # paraphrases and the prompt itself
    assert routed[~examples.in_scope].float().mean() < 0.35  # neighbours (same relation, other subject)
    reloaded = ScopeClassifier.load(classifier.save(tmp_path / "scope", model_name="factgpt"), model)
    with torch.no_grad():
        torch.testing.assert_close(reloaded.embed(examples.inputs), classifier.embed(examples.inputs), rtol=0, atol=0)
    with pytest.raises(InvalidRequestError, match="does not fit"):
        ScopeClassifier.load(tmp_path / "scope", workbench.load_model(tiny_model_dirs["llama"]))


@pytest.mark.parametrize("bad", [{"threshold": 0.0}, {"threshold": 1.0}, {"context_repeats": 0}, {},
                                 {"classifier": "/nonexistent"}])
def test_bad_settings_or_no_classifier_are_refused_with_the_model_untouched(model, bad):
    """The tiny model is not bundled: without a classifier folder SERAC has nothing to route with."""
    weights = snapshot(model)
    with pytest.raises(InvalidRequestError):
        workbench.edit(model, EDIT, "serac", check_targets=False, **bad)
    assert not has_rules(model) and changed(model, weights) == set()
