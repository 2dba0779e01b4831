"""EasyEdit's dataset layouts: exact round trips, the conversion to CounterFact cases checked against
the bundled benchmark's own cases, and bad input named."""
from __future__ import annotations

import json

import pytest

import workbench
from workbench.data import write_counterfact
from workbench.easyedit import EasyEditRecord, Probe, read_cases, read_easyedit, write_easyedit
from workbench.errors import DatasetFormatError, SubjectNotInPromptError
from workbench.evaluate.metrics import case_metrics
from workbench.models import record_of

COUNTERFACT = {"case_id": 7, "prompt": "The mother tongue of Ada Lovelace is", "subject": "Ada Lovelace",
               "target_new": "French", "ground_truth": "English", "rephrase_prompt": "Ada Lovelace spoke natively",
               "locality_prompt": "The mother tongue of Charles Babbage is", "locality_ground_truth": "English"}
ZSRE = {"subject": "Ada Lovelace", "src": "What is the native language of Ada Lovelace?", "pred": "English",
        "rephrase": "Which language did Ada Lovelace grow up speaking?", "alt": "French", "answers": ["English"],
        "loc": "nq question: who wrote the analytical engine notes", "loc_ans": "Ada Lovelace",
        "cond": "English >> French || What is the native language of Ada Lovelace?",
        "portability": {"Recalled Relation": "(Ada Lovelace, native language, French)",
                        "New Question": "Which country is the native language of Ada Lovelace mostly spoken in?",
                        "New Answer": "France"}}
KNOWEDIT = {"subject": "Ada Lovelace", "prompt": "The occupation of Ada Lovelace is", "target_new": "painter",
            "ground_truth": ["mathematician"],
            "portability": {"Subject_Aliasing": [{"prompt": "The occupation of Augusta Ada King is",
                                                  "ground_truth": "painter"}],
                            "Reasoning": [{"prompt": "Ada Lovelace works with", "ground_truth": [["brushes", "paint"]]}]},
            "locality": {"Relation_Specificity": [{"prompt": "The father of Ada Lovelace is",
                                                   "ground_truth": ["Lord Byron"]}],
                         "Forgetfulness": [{"prompt": "The occupation of Ada Lovelace, not a painter, is",
                                            "ground_truth": "mathematician"}]},
            "rephrase_prompt": "Ada Lovelace works as a"}


@pytest.mark.parametrize("obj", [COUNTERFACT, ZSRE, KNOWEDIT], ids=["counterfact", "zsre", "knowedit"])
def test_a_file_read_and_written_again_is_the_same_json(obj, tmp_path):
    source, copy = tmp_path / "in.json", tmp_path / "out.json"
    source.write_text(json.dumps([obj]))
    write_easyedit(read_easyedit(source), copy)
    assert json.loads(copy.read_text()) == [obj]


def test_each_layout_is_read_into_the_same_fields(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(obj) for obj in (COUNTERFACT, ZSRE, KNOWEDIT)))
    counterfact, zsre, knowedit = read_easyedit(path)
    assert [r.layout for r in (counterfact, zsre, knowedit)] == ["counterfact", "zsre", "knowedit"]
    assert (zsre.prompt, zsre.target_new, zsre.ground_truth) == (ZSRE["src"], "French", ("English",))
    assert zsre.portability["one_hop"] == (Probe(ZSRE["portability"]["New Question"], "France"),)
    assert knowedit.portability["Reasoning"][0].answers() == ["brushes", "paint"]
    assert set(knowedit.locality) == {"Relation_Specificity", "Forgetfulness"}
    assert counterfact.rephrase == ("Ada Lovelace spoke natively",)


def test_a_record_becomes_a_counterfact_case_with_same_object_neighbours():
    case = EasyEditRecord("knowedit", KNOWEDIT["subject"], KNOWEDIT["prompt"], "painter", ("mathematician",),
                          ("Ada Lovelace works as a",), {
                              "Relation_Specificity": (Probe("The father of Ada Lovelace is", ["Lord Byron"]),),
                              "Forgetfulness": (Probe("Grace Hopper was a", "mathematician"),)}).to_counterfact(3)
    request = case.requested_rewrite
    assert (request.prompt, request.target_true, request.case_id) == ("The occupation of {} is", "mathematician", 3)
    assert case.paraphrase_prompts == ("Ada Lovelace works as a",)
    assert case.neighborhood_prompts == ("Grace Hopper was a",)  # the probe whose answer is the true object


def test_the_bundled_benchmark_scores_the_same_through_easyedit(tmp_path):
    """factgpt's cases written in EasyEdit's counterfact layout (one paraphrase, one neighbour) and read
    back score exactly as the original cases cut to the same prompts."""
    model = workbench.load_model("factgpt")
    cases = record_of(model).benchmark(8, split="evaluation")
    write_easyedit([EasyEditRecord.from_counterfact(case) for case in cases], tmp_path / "cf.json")
    cut = [type(case)(case.case_id, case.requested_rewrite, case.paraphrase_prompts[:1],
                      case.neighborhood_prompts[:1]) for case in cases]
    through = read_cases(tmp_path / "cf.json")
    assert [c.case_id for c in through] == [c.case_id for c in cases]
    assert case_metrics(model, through) == case_metrics(model, cut)
    write_counterfact(cases, tmp_path / "original.json")
    assert read_cases(tmp_path / "original.json") == cases  # the 2022 layout is still read as it is


def test_bad_records_are_named(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([COUNTERFACT, {k: v for k, v in COUNTERFACT.items() if k != "subject"}]))
    with pytest.raises(DatasetFormatError, match="record 1: 'subject' is missing"):
        read_easyedit(path)
    path.write_text(json.dumps([{"question": "?"}]))
    with pytest.raises(DatasetFormatError, match="not an EasyEdit record"):
        read_easyedit(path)
    path.write_text(json.dumps([{**COUNTERFACT, "prompt": "The mother tongue of Lovelace is"}]))
    with pytest.raises(SubjectNotInPromptError):
        read_cases(path)
