"""The data model: edit requests, CounterFact and zsRE records, their JSON round trips and errors."""
from __future__ import annotations

import copy
import json

import pytest

from workbench.data import (
    CounterFactRecord,
    EditRequest,
    Fact,
    counterfact_from_json,
    counterfact_to_json,
    read_counterfact,
    read_zsre,
    write_counterfact,
    write_zsre,
    zsre_from_json,
    zsre_to_json,
)
from workbench.errors import (
    DatasetFormatError,
    InvalidRequestError,
    PromptTemplateError,
    SubjectNotInPromptError,
    WorkbenchError,
)

# Written by hand in the public format of counterfact.json (Meng et al. 2022), key order included.
COUNTERFACT_RECORD = {
    "case_id": 0,
    "pararel_idx": 2796,
    "requested_rewrite": {
        "prompt": "The mother tongue of {} is",
        "relation_id": "P103",
        "target_new": {"str": "English", "id": "Q1860"},
        "target_true": {"str": "French", "id": "Q150"},
        "subject": "Danielle Darrieux",
    },
    "paraphrase_prompts": [
        "Shayna does this and Yossel goes still and dies. Danielle Darrieux, a native",
        "An album was recorded for Capitol Nashville but never released. Danielle Darrieux spoke the language",
    ],
    "neighborhood_prompts": [
        "The mother tongue of Léon Blum is",
        "The native language of Montesquieu is",
        "François Bayrou, a native",
    ],
    "attribute_prompts": [
        "J.\u00a0R.\u00a0R. Tolkien is a native speaker of",
        "The mother tongue of Douglas Adams is",
    ],
    "generation_prompts": [
        "Danielle Darrieux's mother tongue is",
        "Where Danielle Darrieux is from, people speak the language of",
    ],
}

ZSRE_RECORD = {
    "subject": "Watts Humphrey",
    "src": "What university did Watts Humphrey attend?",
    "pred": "Trinity College",
    "rephrase": "What university did Watts Humphrey take part in?",
    "alt": "University of Michigan",
    "answers": ["Illinois Institute of Technology"],
    "loc": "nq question: who played desmond doss father in hacksaw ridge",
    "loc_ans": "Hugo Weaving",
    "cond": "Trinity College >> University of Michigan || What university did Watts Humphrey attend?",
}


def test_new_errors_are_workbench_value_errors():
    for error in (InvalidRequestError, PromptTemplateError, SubjectNotInPromptError, DatasetFormatError):
        assert issubclass(error, WorkbenchError) and issubclass(error, ValueError)


# --- EditRequest -------------------------------------------------------------------------------


def test_edit_request_fills_prompt():
    request = EditRequest("The capital of {} is", "France", "Rome", target_true="Paris")
    assert request.text == request.filled_prompt() == "The capital of France is"
    assert request.relation_id is None and request.case_id is None


def test_edit_request_keeps_other_braces_literally():
    request = EditRequest("In {} the set {x} is", "France", "empty")
    assert request.text == "In France the set {x} is"


def test_edit_request_from_fact():
    request = EditRequest.from_fact(Fact("France", "P36", "Paris"), "The capital of {} is", "Rome")
    assert request == EditRequest("The capital of {} is", "France", "Rome", target_true="Paris", relation_id="P36")


@pytest.mark.parametrize("prompt", ["The capital of France is", "{} and {} are", ""])
def test_edit_request_needs_exactly_one_slot(prompt):
    with pytest.raises(PromptTemplateError, match="exactly one"):
        EditRequest(prompt, "France", "Rome")


@pytest.mark.parametrize(
    ("subject", "target_new", "target_true"),
    [
        ("France", "", None),
        ("France", "   ", None),
        ("", "Rome", None),
        (" \t", "Rome", None),
        ("France", "Rome", ""),
    ],
)
def test_edit_request_rejects_empty_fields(subject, target_new, target_true):
    with pytest.raises(InvalidRequestError):
        EditRequest("The capital of {} is", subject, target_new, target_true=target_true)


def test_edit_request_is_frozen_and_hashable():
    request = EditRequest("The capital of {} is", "France", "Rome")
    with pytest.raises(AttributeError):
        request.subject = "Italy"  # type: ignore[misc]
    assert len({request, EditRequest("The capital of {} is", "France", "Rome")}) == 1


# --- CounterFact -------------------------------------------------------------------------------


def test_counterfact_record_fields():
    record = counterfact_from_json(COUNTERFACT_RECORD)
    assert record.case_id == 0
    assert record.requested_rewrite == EditRequest(
        prompt="The mother tongue of {} is",
        subject="Danielle Darrieux",
        target_new="English",
        target_true="French",
        relation_id="P103",
        case_id=0,
    )
    assert record.requested_rewrite.text == "The mother tongue of Danielle Darrieux is"
    assert (record.target_new_id, record.target_true_id) == ("Q1860", "Q150")
    assert record.paraphrase_prompts == tuple(COUNTERFACT_RECORD["paraphrase_prompts"])
    assert record.neighborhood_prompts[0] == "The mother tongue of Léon Blum is"
    assert record.generation_prompts == tuple(COUNTERFACT_RECORD["generation_prompts"])
    assert record.extra == {
        "pararel_idx": 2796,
        "attribute_prompts": COUNTERFACT_RECORD["attribute_prompts"],
    }
    hash(record)


def test_counterfact_json_round_trip_is_exact():
    original = copy.deepcopy(COUNTERFACT_RECORD)
    record = counterfact_from_json(original)
    assert counterfact_to_json(record) == COUNTERFACT_RECORD
    assert original == COUNTERFACT_RECORD  # reading does not change its input
    assert counterfact_from_json(counterfact_to_json(record)) == record


def test_counterfact_json_round_trip_without_optional_keys():
    obj = copy.deepcopy(COUNTERFACT_RECORD)
    del obj["pararel_idx"], obj["attribute_prompts"]
    rewrite = obj["requested_rewrite"]
    del rewrite["relation_id"], rewrite["target_true"]
    del rewrite["target_new"]["id"]
    record = counterfact_from_json(obj)
    assert record.requested_rewrite.target_true is None and record.target_new_id is None
    assert counterfact_to_json(record) == obj


def test_counterfact_to_json_output_is_independent_of_record():
    record = counterfact_from_json(COUNTERFACT_RECORD)
    counterfact_to_json(record)["attribute_prompts"].append("changed")
    assert counterfact_to_json(record) == COUNTERFACT_RECORD


def test_counterfact_record_built_in_code_takes_case_id():
    request = EditRequest("The mother tongue of {} is", "Danielle Darrieux", "English")
    record = CounterFactRecord(7, request, paraphrase_prompts=["Danielle Darrieux spoke"])
    assert record.requested_rewrite.case_id == 7
    assert record.paraphrase_prompts == ("Danielle Darrieux spoke",)  # a list becomes a tuple
    with pytest.raises(DatasetFormatError, match="case_id"):
        CounterFactRecord(case_id=7, requested_rewrite=EditRequest("{} is", "X", "Y", case_id=8))
    with pytest.raises(DatasetFormatError, match="modelled"):
        CounterFactRecord(case_id=7, requested_rewrite=request, extra={"case_id": 1})


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_counterfact_file_round_trip(tmp_path, suffix):
    second = copy.deepcopy(COUNTERFACT_RECORD)
    second["case_id"] = 1
    second["requested_rewrite"]["subject"] = "Édith Piaf"
    records = [counterfact_from_json(COUNTERFACT_RECORD), counterfact_from_json(second)]
    path = tmp_path / f"counterfact{suffix}"
    write_counterfact(records, path)
    text = path.read_text(encoding="utf-8")
    assert "Édith Piaf" in text and "Léon Blum" in text  # ensure_ascii=False
    if suffix == ".json":
        assert text.startswith("[\n  {") and json.loads(text) == [COUNTERFACT_RECORD, second]
    else:
        assert [json.loads(line) for line in text.splitlines()] == [COUNTERFACT_RECORD, second]
    assert read_counterfact(path) == records
    assert read_counterfact(str(path)) == records


def test_counterfact_jsonl_flag_overrides_suffix(tmp_path):
    path = tmp_path / "counterfact.json"
    write_counterfact([counterfact_from_json(COUNTERFACT_RECORD)], path, jsonl=True)
    assert json.loads(path.read_text(encoding="utf-8").strip()) == COUNTERFACT_RECORD
    assert read_counterfact(path) == [counterfact_from_json(COUNTERFACT_RECORD)]


def test_reads_jsonl_with_blank_lines_and_line_separator(tmp_path):
    obj = copy.deepcopy(COUNTERFACT_RECORD)
    obj["generation_prompts"].append("one\u2028two")
    path = tmp_path / "cf.jsonl"
    path.write_text("\n" + json.dumps(obj, ensure_ascii=False) + "\n\n", encoding="utf-8")
    assert [counterfact_to_json(r) for r in read_counterfact(path)] == [obj]


def _without(path: tuple[str, ...]) -> dict:
    obj = copy.deepcopy(COUNTERFACT_RECORD)
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    del parent[path[-1]]
    return obj


@pytest.mark.parametrize(
    "missing",
    [
        ("requested_rewrite",),
        ("paraphrase_prompts",),
        ("requested_rewrite", "prompt"),
        ("requested_rewrite", "subject"),
        ("requested_rewrite", "target_new"),
        ("requested_rewrite", "target_new", "str"),
        ("requested_rewrite", "target_true", "str"),
    ],
)
def test_counterfact_missing_key_is_named(missing):
    with pytest.raises(DatasetFormatError, match=r"record 4 \(case_id 0\).*missing key '" + ".".join(missing)):
        counterfact_from_json(_without(missing), index=4)


def test_counterfact_missing_case_id_is_named():
    with pytest.raises(DatasetFormatError, match=r"record 2: missing key 'case_id'"):
        counterfact_from_json(_without(("case_id",)), index=2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda obj: obj.update(case_id="0"), "'case_id' must be an integer"),
        (lambda obj: obj.update(paraphrase_prompts="not a list"), "'paraphrase_prompts' must be an array"),
        (lambda obj: obj["requested_rewrite"].update(target_new="English"), "target_new' must be a JSON object"),
        (lambda obj: obj["requested_rewrite"].update(prompt="The mother tongue is"), "exactly one"),
        (lambda obj: obj["requested_rewrite"].update(comment="x"), "unknown key.*'requested_rewrite.comment'"),
        (lambda obj: obj["requested_rewrite"]["target_new"].update(label="x"), "target_new.label"),
    ],
)
def test_counterfact_malformed_values(change, message):
    obj = copy.deepcopy(COUNTERFACT_RECORD)
    change(obj)
    with pytest.raises(DatasetFormatError, match=message):
        counterfact_from_json(obj)


def test_counterfact_not_an_object():
    with pytest.raises(DatasetFormatError, match="record 0 must be a JSON object"):
        counterfact_from_json(["case_id", 0], index=0)


def test_read_counterfact_names_file_and_record(tmp_path):
    bad = _without(("requested_rewrite", "subject"))
    bad["case_id"] = 17
    path = tmp_path / "cf.json"
    path.write_text(json.dumps([COUNTERFACT_RECORD, bad]), encoding="utf-8")
    expected = r"record 1 \(case_id 17\) of .*cf\.json: missing key 'requested_rewrite\.subject'"
    with pytest.raises(DatasetFormatError, match=expected):
        read_counterfact(path)


@pytest.mark.parametrize(("name", "text"), [("cf.json", "[{]"), ("cf.jsonl", '{"case_id": 0}\n{oops\n')])
def test_read_counterfact_invalid_json(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="not valid JSON"):
        read_counterfact(path)


# --- zsRE --------------------------------------------------------------------------------------


def test_zsre_record_to_request():
    record = zsre_from_json(ZSRE_RECORD)
    request = record.to_request(case_id=3)
    assert request == EditRequest(
        prompt="What university did {} attend?",
        subject="Watts Humphrey",
        target_new="University of Michigan",
        target_true="Illinois Institute of Technology",
        case_id=3,
    )
    assert request.text == ZSRE_RECORD["src"]


def test_zsre_request_replaces_first_occurrence_only():
    obj = {**ZSRE_RECORD, "subject": "Bo", "src": "Who did Bo meet at Bo's house?", "answers": []}
    record = zsre_from_json(obj)
    request = record.to_request()
    assert request.prompt == "Who did {} meet at Bo's house?"
    assert request.target_true is None


def test_zsre_subject_not_in_src():
    record = zsre_from_json({**ZSRE_RECORD, "subject": "Watts S. Humphrey"})
    with pytest.raises(SubjectNotInPromptError, match="does not occur"):
        record.to_request()


def test_zsre_json_round_trip_keeps_extra_keys():
    obj = {**ZSRE_RECORD, "case_id": 12}
    record = zsre_from_json(obj)
    assert record.answers == ("Illinois Institute of Technology",) and record.extra == {"case_id": 12}
    assert zsre_to_json(record) == obj
    hash(record)


@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_zsre_file_round_trip(tmp_path, suffix):
    records = [zsre_from_json(ZSRE_RECORD), zsre_from_json({**ZSRE_RECORD, "alt": "Universität Wien"})]
    path = tmp_path / f"zsre{suffix}"
    write_zsre(records, path)
    assert "Universität Wien" in path.read_text(encoding="utf-8")
    assert read_zsre(path) == records


@pytest.mark.parametrize("key", ["subject", "src", "alt", "answers", "loc_ans", "cond"])
def test_zsre_missing_key_is_named(key):
    obj = {k: v for k, v in ZSRE_RECORD.items() if k != key}
    with pytest.raises(DatasetFormatError, match=rf"zsRE record 5: missing key '{key}'"):
        zsre_from_json(obj, index=5)


def test_zsre_answers_must_be_strings():
    with pytest.raises(DatasetFormatError, match="'answers' must be an array of strings"):
        zsre_from_json({**ZSRE_RECORD, "answers": "Illinois Institute of Technology"})
