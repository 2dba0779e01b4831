"""EasyEdit's flat dataset layouts, read and written (Wang et al. 2024, EasyEdit; Zhang et al. 2024, KnowEdit).

EasyEdit (github.com/zjunlp/EasyEdit) and the datasets released for it use flat JSON records rather
than the 2022 CounterFact layout. Three layouts are recognised, per record, by their keys:

* ``counterfact`` (``counterfact-train/val/edit.json``): ``prompt`` (the filled sentence, subject
  included), ``subject``, ``target_new``, ``ground_truth``, ``rephrase_prompt``, ``locality_prompt``,
  ``locality_ground_truth``, and often ``case_id``;
* ``zsre`` (``zsre_mend_eval.json``, ROME's zsRE layout): ``src`` (the question), ``subject``,
  ``alt`` (the new answer), ``answers`` (true answers), ``rephrase``, ``loc`` / ``loc_ans`` (an
  unrelated question and its answer), ``pred``, ``cond``, and in the portability files
  ``portability`` = {"New Question", "New Answer", "Recalled Relation"};
* ``knowedit`` (KnowEdit's wiki_counterfact, wiki_recent, ZsRE): ``prompt``, ``subject``,
  ``target_new``, ``ground_truth`` (a string or a list; absent in wiki_recent), ``rephrase`` or
  ``rephrase_prompt``, and ``locality`` / ``portability``: category (``Relation_Specificity``,
  ``Forgetfulness``, ``Subject_Aliasing``, ``Reasoning``, ``Logical_Generalization``) -> list of
  {``prompt``, ``ground_truth``}, where a ground truth is a string, a list of aliases or a list of
  alias lists.

:class:`EasyEditRecord` holds what the three share; every key it does not model stays in ``raw`` and
is written back, so a file read and written again is the same JSON. :meth:`EasyEditRecord.to_counterfact`
turns a record into the workbench's CounterFact case for ``bench`` and the sequential runner: the
rephrasings are its paraphrase prompts, and the locality probes whose answer is the edited fact's
true object (CounterFact's "neighbourhood": another subject with the same object) its neighbourhood
prompts. Limits: other locality probes (an unrelated question and its own answer) and portability
probes are read, kept and written, but not scored yet.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from typing import Any

from workbench.data import CounterFactRecord, EditRequest, read_counterfact
from workbench.errors import DatasetFormatError, InvalidRequestError, SubjectNotInPromptError

LAYOUTS = ("counterfact", "zsre", "knowedit")
NEIGHBOURHOOD = "neighborhood"
"""The locality category of the counterfact and zsre layouts' one locality prompt (EasyEdit's own key)."""
ZSRE_PORTABILITY = "one_hop"
"""The portability category of the zsre layout's New Question / New Answer (as EasyEdit's zsRE example names it)."""


@dataclass(frozen=True)
class Probe:
    """A prompt and the answer expected after the edit, as the file gives it (a string, a list of
    aliases, or a list of alias lists)."""

    prompt: str
    answer: Any

    def answers(self) -> list[str]:
        """Every accepted answer, flattened."""
        pending, found = [self.answer], []
        while pending:
            item = pending.pop(0)
            if isinstance(item, str):
                found.append(item)
            elif isinstance(item, list):
                pending = list(item) + pending
        return found


@dataclass(frozen=True)
class EasyEditRecord:
    """One edit of an EasyEdit dataset, in any of :data:`LAYOUTS`.

    ``prompt`` is the filled sentence or question (the subject in it); ``ground_truth`` the true
    answers (empty where the file has none); ``rephrase`` the rephrased prompts; ``locality`` and
    ``portability`` map a category to its probes; ``raw`` is the record as read (keys written back
    unchanged unless a modelled field replaces them)."""

    layout: str
    subject: str
    prompt: str
    target_new: str
    ground_truth: tuple[str, ...] = ()
    rephrase: tuple[str, ...] = ()
    locality: Mapping[str, tuple[Probe, ...]] = field(default_factory=dict)
    portability: Mapping[str, tuple[Probe, ...]] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise InvalidRequestError(f"unknown EasyEdit layout {self.layout!r}; choose one of {LAYOUTS}")

    def to_counterfact(self, case_id: int) -> CounterFactRecord:
        """The CounterFact case of this edit (see the module docstring for what is kept)."""
        start = self.prompt.find(self.subject)
        if start < 0:
            raise SubjectNotInPromptError(f"subject {self.subject!r} does not occur in the prompt {self.prompt!r}")
        template = self.prompt[:start] + "{}" + self.prompt[start + len(self.subject):]
        true = self.ground_truth[0] if self.ground_truth else None
        neighbours = tuple(probe.prompt for probes in self.locality.values() for probe in probes
                           if true is not None and true in probe.answers())
        request = EditRequest(template, self.subject, self.target_new, true, case_id=case_id)
        return CounterFactRecord(case_id, request, paraphrase_prompts=self.rephrase, neighborhood_prompts=neighbours)

    @classmethod
    def from_counterfact(cls, record: CounterFactRecord) -> EasyEditRecord:
        """A 2022 CounterFact case in EasyEdit's counterfact layout: its first paraphrase and first
        neighbourhood prompt (EasyEdit's layout holds one of each), and ``case_id``."""
        request = record.requested_rewrite
        locality = ({NEIGHBOURHOOD: (Probe(record.neighborhood_prompts[0], request.target_true),)}
                    if record.neighborhood_prompts and request.target_true else {})
        return cls("counterfact", request.subject, request.filled_prompt(), request.target_new,
                   (request.target_true,) if request.target_true else (), record.paraphrase_prompts[:1], locality,
                   raw={"case_id": record.case_id})


def easyedit_from_json(obj: Any, *, index: int | None = None) -> EasyEditRecord:
    """The record of one EasyEdit JSON object; its layout is told by its keys.

    Raises:
        DatasetFormatError: not an object, no known layout, or a missing or mistyped field (named).
    """
    where = f"EasyEdit record {index}" if index is not None else "EasyEdit record"
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    layout = _layout(obj, where)
    text = lambda key: _string(obj, key, where)  # noqa: E731
    if layout == "zsre":
        portability = obj.get("portability")
        return EasyEditRecord(
            layout, text("subject"), text("src"), text("alt"), tuple(_answers(obj.get("answers", []), where)),
            _optional_strings(obj, "rephrase", where), {NEIGHBOURHOOD: (Probe(text("loc"), obj.get("loc_ans", "")),)},
            {ZSRE_PORTABILITY: (Probe(portability["New Question"], portability["New Answer"]),)}
            if isinstance(portability, dict) and "New Question" in portability else {},
            raw=copy.deepcopy(obj))
    truth = obj.get("ground_truth")
    if layout == "counterfact":
        locality = ({NEIGHBOURHOOD: (Probe(text("locality_prompt"), obj.get("locality_ground_truth")),)}
                    if "locality_prompt" in obj else {})
        return EasyEditRecord(layout, text("subject"), text("prompt"), text("target_new"),
                              tuple(_answers(truth, where)) if truth is not None else (),
                              _optional_strings(obj, "rephrase_prompt", where), locality, raw=copy.deepcopy(obj))
    rephrase_key = "rephrase" if "rephrase" in obj else "rephrase_prompt"
    return EasyEditRecord(layout, text("subject"), text("prompt"), text("target_new"),
                          tuple(_answers(truth, where)) if truth is not None else (),
                          _optional_strings(obj, rephrase_key, where), _probes(obj.get("locality", {}), where),
                          _probes(obj.get("portability", {}), where), raw=copy.deepcopy(obj))


def easyedit_to_json(record: EasyEditRecord) -> dict[str, Any]:
    """The JSON object of ``record`` in its layout: the keys it was read with, modelled fields written over."""
    obj = copy.deepcopy(dict(record.raw))
    truth = _truth_json(record.ground_truth, obj.get("answers" if record.layout == "zsre" else "ground_truth"))
    neighbour = record.locality.get(NEIGHBOURHOOD, ())
    if record.layout == "zsre":
        obj.update({"subject": record.subject, "src": record.prompt, "alt": record.target_new, "answers": truth or []})
        _put_string(obj, "rephrase", record.rephrase)
        if neighbour:
            obj.update({"loc": neighbour[0].prompt, "loc_ans": neighbour[0].answer})
        if record.portability.get(ZSRE_PORTABILITY):
            probe = record.portability[ZSRE_PORTABILITY][0]
            obj["portability"] = {**obj.get("portability", {}), "New Question": probe.prompt, "New Answer": probe.answer}
        return obj
    obj.update({"subject": record.subject, "prompt": record.prompt, "target_new": record.target_new})
    if truth is not None:
        obj["ground_truth"] = truth
    if record.layout == "counterfact":
        _put_string(obj, "rephrase_prompt", record.rephrase)
        if neighbour:
            obj.update({"locality_prompt": neighbour[0].prompt, "locality_ground_truth": neighbour[0].answer})
        return obj
    _put_string(obj, "rephrase_prompt" if "rephrase_prompt" in obj else "rephrase", record.rephrase)
    for key, probes in (("locality", record.locality), ("portability", record.portability)):
        if probes or key in obj:
            obj[key] = {category: [{"prompt": p.prompt, "ground_truth": p.answer} for p in items]
                        for category, items in probes.items()}
    return obj


def read_easyedit(path: str | PathLike) -> list[EasyEditRecord]:
    """Read an EasyEdit dataset file (a JSON list, or JSON Lines)."""
    return [easyedit_from_json(obj, index=index) for index, obj in enumerate(_json_objects(path))]


def write_easyedit(records: Iterable[EasyEditRecord], path: str | PathLike) -> None:
    """Write ``records`` as a JSON list (EasyEdit's files are lists), each in its own layout."""
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([easyedit_to_json(record) for record in records], handle, indent=1, ensure_ascii=False)
        handle.write("\n")


def read_cases(path: str | PathLike) -> list[CounterFactRecord]:
    """CounterFact cases from a 2022 CounterFact file or any EasyEdit layout (told by the first record's
    keys); EasyEdit records become cases numbered from 0 in file order (their ``case_id`` where given)."""
    objects = _json_objects(path)
    if objects and isinstance(objects[0], dict) and "requested_rewrite" in objects[0]:
        return read_counterfact(path)
    records = [easyedit_from_json(obj, index=index) for index, obj in enumerate(objects)]
    return [record.to_counterfact(record.raw.get("case_id", index) if isinstance(record.raw.get("case_id"), int)
                                  else index) for index, record in enumerate(records)]


def _json_objects(path: str | PathLike) -> list[Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise DatasetFormatError(f"cannot read {path}: {err.strerror}") from err
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{path} is neither JSON nor JSON Lines: {err}") from err
    if not isinstance(data, list):
        raise DatasetFormatError(f"{path}: expected a list of records, got a JSON {type(data).__name__}")
    return data


def _layout(obj: dict, where: str) -> str:
    if "src" in obj and "alt" in obj:
        return "zsre"
    if "prompt" in obj and "target_new" in obj:
        return "knowedit" if isinstance(obj.get("locality"), dict) or isinstance(obj.get("portability"), dict) \
            else "counterfact"
    raise DatasetFormatError(f"{where}: not an EasyEdit record (needs 'prompt' and 'target_new', or zsRE's 'src' "
                             f"and 'alt'); keys: {sorted(obj)}")


def _string(obj: dict, key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        problem = "missing" if key not in obj else f"a {type(value).__name__}, not a string"
        raise DatasetFormatError(f"{where}: '{key}' is {problem}")
    return value


def _optional_strings(obj: dict, key: str, where: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise DatasetFormatError(f"{where}: '{key}' must be a string or a list of strings")


def _answers(value: Any, where: str) -> list[str]:
    answers = Probe("", value).answers()
    if value not in (None, []) and not answers:
        raise DatasetFormatError(f"{where}: an answer must be a string or a list of strings, got {value!r}")
    return answers


def _probes(value: Any, where: str) -> dict[str, tuple[Probe, ...]]:
    if not isinstance(value, dict):
        raise DatasetFormatError(f"{where}: 'locality' and 'portability' map a category to a list of probes")
    probes = {}
    for category, items in value.items():
        items = items if isinstance(items, list) else [items]
        if not all(isinstance(item, dict) and isinstance(item.get("prompt"), str) for item in items):
            raise DatasetFormatError(f"{where}: every probe of {category!r} needs a 'prompt' string")
        probes[category] = tuple(Probe(item["prompt"], item.get("ground_truth")) for item in items)
    return probes


def _truth_json(truth: tuple[str, ...], written: Any) -> Any:
    """The ground truth as the file wrote it: a list where it was a list, else one string (None: none)."""
    if isinstance(written, list):
        return written if Probe("", written).answers() == list(truth) else list(truth)
    return truth[0] if truth else None


def _put_string(obj: dict, key: str, values: tuple[str, ...]) -> None:
    """One rephrasing as a string (as the layouts have it), several as a list; none leaves the key out."""
    if values:
        obj[key] = values[0] if len(values) == 1 and not isinstance(obj.get(key), list) else list(values)
