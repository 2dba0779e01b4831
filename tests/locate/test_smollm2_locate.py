"""Every locate method on smollm2-135m, the real pretrained model, checked against invariants and
facts it is measured to know; its bad inputs get the same errors as elsewhere, the model untouched.

A 30-layer model is slow to trace on a CPU: tests over 30 s on 2 cores are marked slow (make test-slow);
the default run keeps one hidden-state trace, IG, memories and the bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from weights_snapshot import changed, snapshot

import workbench
from workbench.errors import LayerOutOfRangeError, PromptTooLongError, SubjectNotInPromptError
from workbench.locate.attribution import attribute
from workbench.locate.effects import LAST_SUBJECT, trace_many
from workbench.locate.memories import memory
from workbench.locate.neurons import intervention_effect, knowledge_neurons
from workbench.locate.patching import activation_patching, attribution_patching, patching_agreement
from workbench.locate.subject_swap import donor_subjects, subject_swap
from workbench.locate.tracing import trace, trace_kinds
from workbench.zoo.records import RECORDS

PROMPT, SUBJECT, ANSWER = "The Eiffel Tower is located in the city of", "Eiffel Tower", "Paris"
FAST = {"samples": 2}


@pytest.fixture(scope="module")
def smollm2():
    return workbench.load_model("smollm2-135m")


@pytest.fixture(scope="module")
def hidden(smollm2):
    return trace(smollm2, PROMPT, SUBJECT, answer=ANSWER, kind="hidden", samples=2)


def test_restoring_the_last_token_after_the_last_block_restores_the_answer(hidden):
    assert hidden.clean_prob > 0.5 and hidden.corrupted_prob < 0.5 * hidden.clean_prob
    gap = hidden.clean_prob - hidden.corrupted_prob
    # restoring the whole residual stream at the last position after the last block is the clean run
    assert hidden.indirect_effect[-1, -1] == pytest.approx(gap, rel=1e-3)
    assert hidden.scores.shape == (len(hidden.tokens), 30)


@pytest.mark.slow
def test_the_three_kinds_share_the_noise_and_agree_with_the_hidden_trace(smollm2, hidden):
    kinds = trace_kinds(smollm2, PROMPT, SUBJECT, answer=ANSWER, samples=2)
    assert [t.kind for t in kinds] == ["hidden", "mlp", "attn"]
    np.testing.assert_allclose(kinds[0].scores, hidden.scores, atol=1e-5)
    assert kinds[1].corrupted_prob == pytest.approx(hidden.corrupted_prob, rel=1e-5)


@pytest.mark.slow
def test_severing_the_mlps_lowers_the_hidden_state_effect_at_the_subject(smollm2, hidden):
    severed = trace(smollm2, PROMPT, SUBJECT, answer=ANSWER, kind="hidden", severed="mlp", samples=2)
    subject = slice(hidden.subject_start, hidden.subject_end)
    assert severed.indirect_effect[subject, :10].mean() < hidden.indirect_effect[subject, :10].mean()


@pytest.mark.slow
def test_average_indirect_effect_by_token_role(smollm2):
    facts = RECORDS["smollm2-135m"].known_facts(4)
    effect = trace_many(smollm2, facts, kinds=["mlp"], samples=2, window=10, progress=False)
    assert effect.n_facts == 4
    # an early site, as ROME finds: calibration traced 48 known facts to a peak at layer 3 (settings.json),
    # the story 12 facts to layer 3 (benchmarks/aie_precision.py)
    assert effect.recommend_layer() < 10
    assert effect.effects["mlp"][LAST_SUBJECT].max() > 0.05


@pytest.mark.slow
def test_attribution_patching_agrees_with_activation_patching_except_at_the_first_mlp(smollm2):
    clean, corrupted = "The Eiffel Tower is located in the city of", "The Colosseum is located in the city of"
    estimated = attribution_patching(smollm2, clean, corrupted, kinds=["hidden", "mlp"])
    hidden = activation_patching(smollm2, clean, corrupted, kind="hidden")
    mlp = activation_patching(smollm2, clean, corrupted, kind="mlp")
    assert patching_agreement(hidden, estimated["hidden"]) > 0.5  # measured 0.86
    # The first-order estimate fails at MLP 0 on the subject tokens (measured +7.5 and +13.4 in logit
    # difference, estimated -7.6 and -6.3): a large, non-linear change. Elsewhere it tracks (r 0.87).
    later = np.corrcoef(mlp.effects[:, 1:].ravel(), estimated["mlp"].effects[:, 1:].ravel())[0, 1]
    assert later > 0.5
    assert patching_agreement(mlp, estimated["mlp"]) < later


def test_integrated_gradients_are_complete(smollm2):
    result = attribute(smollm2, PROMPT, ANSWER, layers=[10, 20], steps=20)
    # completeness: per layer, the attributions sum to p(answer) - p(answer | layer's FFN zeroed)
    assert np.abs(result.deltas).max() < 0.05 * result.output


@pytest.mark.slow
def test_knowledge_neurons_matter_more_for_their_fact(smollm2):
    relation = RECORDS["smollm2-135m"].relations()["P276"]
    paraphrases = [template.format(SUBJECT) for template in relation.templates]
    found = knowledge_neurons(smollm2, paraphrases, ANSWER)
    assert found.neurons
    related = intervention_effect(smollm2, found.neurons, paraphrases, [ANSWER] * len(paraphrases), 0.0)
    unrelated = intervention_effect(smollm2, found.neurons, ["Dortmund is a city in the country of"], ["Germany"], 0.0)
    assert related.mean() < unrelated.mean()


def test_a_neurons_memory_reads_its_value_through_the_unembedding(smollm2):
    found = memory(smollm2, 12, 7, k=3, corpus=RECORDS["smollm2-135m"].corpus_texts()[:6])
    value = smollm2.original_model.model.layers[12].mlp.down_proj.weight[:, 7].detach()
    logits = smollm2.original_model.lm_head.weight.detach() @ value
    assert found.promoted[0][1] == pytest.approx(float(logits.max()), rel=1e-5)
    assert len(found.top_prompts) == 3


@pytest.mark.slow
def test_subject_swap_flips_answers_when_the_last_token_is_patched_after_the_last_block(smollm2):
    records = [r for r in RECORDS["smollm2-135m"].benchmark() if r.requested_rewrite.relation_id == "P30"]
    pairs = [(r, donor) for r, donor in zip(records, donor_subjects(records)) if donor is not None][:3]
    donor_records = [r for r in records if r.requested_rewrite.subject in {donor for _, donor in pairs}]
    result = subject_swap(smollm2, [r for r, _ in pairs] + donor_records, progress=False)
    assert result.n_cases >= 2
    assert result.last[-1] == pytest.approx(1.0)  # after the last block, the last position is the output


@pytest.mark.parametrize(("call", "error"), [
    (lambda m: trace(m, PROMPT, "Big Ben", **FAST), SubjectNotInPromptError),
    (lambda m: trace(m, "word " * 9000, "word", **FAST), PromptTooLongError),
    (lambda m: attribute(m, PROMPT, ANSWER, layers=[30]), LayerOutOfRangeError),
])
def test_bad_input_is_refused_with_the_model_untouched(smollm2, call, error):
    before = snapshot(smollm2)
    with pytest.raises(error):
        call(smollm2)
    assert changed(smollm2, before) == set()
