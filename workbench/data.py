"""The data model: facts, edit requests, and CounterFact / zsRE records with their readers and writers.

Formats
-------
CounterFact
    Meng, Bau, Andonian and Belinkov (2022), "Locating and Editing Factual Associations in GPT"
    (NeurIPS 2022, the ROME paper), released as ``counterfact.json``: a JSON list of records
    ``{"case_id", "requested_rewrite": {"prompt", "relation_id", "target_new": {"str", "id"},
    "target_true": {"str", "id"}, "subject"}, "paraphrase_prompts", "neighborhood_prompts",
    "generation_prompts", ...}``; the released file also has ``pararel_idx`` and ``attribute_prompts``,
    which :class:`CounterFactRecord` keeps in ``extra``.
zsRE
    The zero-shot relation extraction questions of Levy, Seo, Choi and Zettlemoyer (2017),
    "Zero-Shot Relation Extraction via Reading Comprehension", in the editing split with
    rephrasings of De Cao et al. (2021) as used by Mitchell et al. (2022), "Fast Model Editing at
    Scale", and redistributed by Meng et al. with ROME and MEMIT as ``zsre_mem.json``: a JSON list of
    records ``{"subject", "src", "pred", "rephrase", "alt", "answers", "loc", "loc_ans", "cond"}``.

Readers accept a JSON list (the released form) or JSON Lines. Writers write a JSON list indented
by 2, or JSON Lines where the path ends in ``.jsonl``; always UTF-8, non-ASCII text kept as is.
Keys a record class does not model are kept in its ``extra`` dict, so JSON -> record -> JSON gives
back an equal object. Malformed input raises :class:`~workbench.errors.DatasetFormatError` naming the
record and the key.
"""
from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from workbench.errors import (
    DatasetFormatError,
    InvalidRequestError,
    PromptTemplateError,
    SubjectNotInPromptError,
)

__all__ = [
    "CounterFactRecord",
    "EditRequest",
    "Fact",
    "ZsreRecord",
    "counterfact_from_json",
    "counterfact_to_json",
    "read_counterfact",
    "read_zsre",
    "write_counterfact",
    "write_zsre",
    "zsre_from_json",
    "zsre_to_json",
]

PathLike = str | os.PathLike[str]

SUBJECT_SLOT = "{}"


@dataclass(frozen=True)
class Fact:
    """One (subject, relation, object) triple, e.g. ``Fact("France", "P36", "Paris")``.

    ``relation_id`` follows Wikidata property ids where one exists (P36 capital, ...).
    """

    subject: str
    relation_id: str
    object: str


@dataclass(frozen=True)
class EditRequest:
    """One requested rewrite: the model should complete the filled ``prompt`` with ``target_new``.

    ``prompt`` is a template with exactly one ``{}`` where the subject goes, the form CounterFact's
    prompts already have (``"The mother tongue of {} is"``), so those are used as they are.
    ``target_true`` is the object the edit moves the model away from, where known; ``relation_id``
    (a Wikidata property id) and ``case_id`` (the dataset record's id) are optional labels.

    Raises :class:`~workbench.errors.PromptTemplateError` for a prompt without exactly one ``{}``
    and :class:`~workbench.errors.InvalidRequestError` for an empty subject or target.
    """

    prompt: str
    subject: str
    target_new: str
    target_true: str | None = None
    relation_id: str | None = None
    case_id: int | None = None

    def __post_init__(self) -> None:
        for name in ("prompt", "subject", "target_new"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise InvalidRequestError(f"{name} must be a string, got {type(value).__name__}")
        slots = self.prompt.count(SUBJECT_SLOT)
        if slots != 1:
            raise PromptTemplateError(
                f"prompt {self.prompt!r} has {slots} '{{}}' slots; it needs exactly one, where the subject "
                "goes, e.g. 'The capital of {} is'"
            )
        if not self.subject.strip():
            raise InvalidRequestError("subject is empty; give the entity the fact is about, e.g. 'France'")
        if not self.target_new.strip():
            raise InvalidRequestError(f"target_new is empty for {self.text!r}; give the new object to edit in")
        target_true = self.target_true
        if target_true is not None and (not isinstance(target_true, str) or not target_true.strip()):
            raise InvalidRequestError(f"target_true must be a non-empty string or None, got {target_true!r}")
        if self.relation_id is not None and not isinstance(self.relation_id, str):
            raise InvalidRequestError(f"relation_id must be a string or None, got {self.relation_id!r}")
        if self.case_id is not None and (not isinstance(self.case_id, int) or isinstance(self.case_id, bool)):
            raise InvalidRequestError(f"case_id must be an int or None, got {self.case_id!r}")

    @classmethod
    def from_fact(cls, fact: Fact, template: str, target_new: str) -> EditRequest:
        """The request to rewrite ``fact``'s object to ``target_new``, asked with ``template``.

        ``target_true`` and ``relation_id`` come from the fact.
        """
        return cls(
            prompt=template,
            subject=fact.subject,
            target_new=target_new,
            target_true=fact.object,
            relation_id=fact.relation_id,
        )

    def filled_prompt(self) -> str:
        """The prompt with the subject in its ``{}`` slot, e.g. ``"The capital of France is"``.

        Equal to ``prompt.format(subject)``, except that any other braces are kept literally.
        """
        return self.prompt.replace(SUBJECT_SLOT, self.subject, 1)

    @property
    def text(self) -> str:
        """The filled prompt, as :meth:`filled_prompt` gives it."""
        return self.filled_prompt()


@dataclass(frozen=True)
class CounterFactRecord:
    """One CounterFact record (Meng et al. 2022).

    ``requested_rewrite`` holds the prompt, subject, relation and both targets' strings, with
    ``case_id`` set to the record's; the targets' Wikidata ids (``target_new.id``, ``target_true.id``),
    which a request does not carry, are ``target_new_id`` and ``target_true_id``. Top-level keys not
    modelled here (``pararel_idx``, ``attribute_prompts``, ...) are kept in ``extra``; it takes part in
    equality but not in the hash.
    """

    case_id: int
    requested_rewrite: EditRequest
    paraphrase_prompts: tuple[str, ...] = ()
    neighborhood_prompts: tuple[str, ...] = ()
    generation_prompts: tuple[str, ...] = ()
    target_new_id: str | None = None
    target_true_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if not isinstance(self.case_id, int) or isinstance(self.case_id, bool):
            raise DatasetFormatError(f"case_id must be an int, got {self.case_id!r}")
        request = self.requested_rewrite
        if not isinstance(request, EditRequest):
            raise DatasetFormatError(f"requested_rewrite must be an EditRequest, got {type(request).__name__}")
        if request.case_id is None:
            object.__setattr__(self, "requested_rewrite", replace(request, case_id=self.case_id))
        elif request.case_id != self.case_id:
            raise DatasetFormatError(
                f"requested_rewrite.case_id {request.case_id} differs from the record's case_id {self.case_id}"
            )
        for name in _COUNTERFACT_PROMPT_KEYS:
            object.__setattr__(self, name, _string_tuple(getattr(self, name), name))
        for name in ("target_new_id", "target_true_id"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise DatasetFormatError(f"{name} must be a string or None, got {value!r}")
        if self.target_true_id is not None and request.target_true is None:
            raise DatasetFormatError("target_true_id is set but requested_rewrite.target_true is None")
        object.__setattr__(self, "extra", _extra_dict(self.extra, _COUNTERFACT_KEYS))

    def prompts_by_group(self) -> dict[str, list[str]]:
        """The prompts of each of CounterFact's groups: ``efficacy`` (the filled rewrite prompt),
        ``paraphrase`` and ``neighborhood``."""
        return {
            "efficacy": [self.requested_rewrite.filled_prompt()],
            "paraphrase": list(self.paraphrase_prompts),
            "neighborhood": list(self.neighborhood_prompts),
        }


@dataclass(frozen=True)
class ZsreRecord:
    """One zsRE editing record as in ROME/MEMIT's ``zsre_mem.json``.

    ``src`` is the question about ``subject``, ``answers`` its true answers, ``pred`` a model's answer
    and ``alt`` the new answer to edit in; ``rephrase`` is a paraphrase of ``src``; ``loc`` is an
    unrelated question (``loc_ans`` its answer) the edit should leave alone; ``cond`` is
    ``"pred >> alt || src"``. Keys not modelled here are kept in ``extra``; it takes part in
    equality but not in the hash.
    """

    subject: str
    src: str
    pred: str
    rephrase: str
    alt: str
    answers: tuple[str, ...]
    loc: str
    loc_ans: str
    cond: str
    extra: dict[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        for name in _ZSRE_STRING_KEYS:
            value = getattr(self, name)
            if not isinstance(value, str):
                raise DatasetFormatError(f"{name} must be a string, got {type(value).__name__}")
        object.__setattr__(self, "answers", _string_tuple(self.answers, "answers"))
        object.__setattr__(self, "extra", _extra_dict(self.extra, _ZSRE_KEYS))

    def to_request(self, *, case_id: int | None = None) -> EditRequest:
        """The edit request of this record: ``src`` with the subject's first occurrence as ``{}``.

        ``target_new`` is ``alt`` and ``target_true`` the first of ``answers``, if any. Raises
        :class:`~workbench.errors.SubjectNotInPromptError` where the subject does not occur in ``src``.
        """
        start = self.src.find(self.subject)
        if start < 0:
            raise SubjectNotInPromptError(
                f"subject {self.subject!r} does not occur in the question {self.src!r}, so no prompt "
                "template can be cut from it"
            )
        prompt = self.src[:start] + SUBJECT_SLOT + self.src[start + len(self.subject):]
        return EditRequest(
            prompt=prompt,
            subject=self.subject,
            target_new=self.alt,
            target_true=self.answers[0] if self.answers else None,
            case_id=case_id,
        )


_COUNTERFACT_PROMPT_KEYS = ("paraphrase_prompts", "neighborhood_prompts", "generation_prompts")
_COUNTERFACT_KEYS = ("case_id", "requested_rewrite", *_COUNTERFACT_PROMPT_KEYS)
_REWRITE_KEYS = ("prompt", "relation_id", "target_new", "target_true", "subject")
_TARGET_KEYS = ("str", "id")
_ZSRE_STRING_KEYS = ("subject", "src", "pred", "rephrase", "alt", "loc", "loc_ans", "cond")
_ZSRE_KEYS = ("subject", "src", "pred", "rephrase", "alt", "answers", "loc", "loc_ans", "cond")


def counterfact_from_json(
    obj: Any, *, index: int | None = None, source: PathLike | None = None
) -> CounterFactRecord:
    """The record of one CounterFact JSON object.

    ``index`` (the record's position) and ``source`` (its file) only go into error messages.
    Raises :class:`~workbench.errors.DatasetFormatError` naming the record and the missing or
    malformed key.
    """
    where = _where("CounterFact record", index, None, source)
    _check_object(obj, where)
    case_id = _value(obj, "case_id", where)
    if not isinstance(case_id, int) or isinstance(case_id, bool):
        raise DatasetFormatError(f"{where}: 'case_id' must be an integer, got {_json_type(case_id)}")
    where = _where("CounterFact record", index, case_id, source)
    rewrite = _value(obj, "requested_rewrite", where)
    _check_object(rewrite, f"{where}: 'requested_rewrite'")
    _check_known_keys(rewrite, _REWRITE_KEYS, where, "requested_rewrite.")
    target_new, target_new_id = _target(rewrite, "target_new", where, required=True)
    target_true, target_true_id = _target(rewrite, "target_true", where, required=False)
    try:
        request = EditRequest(
            prompt=_string(rewrite, "prompt", where, "requested_rewrite."),
            subject=_string(rewrite, "subject", where, "requested_rewrite."),
            target_new=target_new,
            target_true=target_true,
            relation_id=(
                _string(rewrite, "relation_id", where, "requested_rewrite.") if "relation_id" in rewrite else None
            ),
            case_id=case_id,
        )
    except InvalidRequestError as err:
        raise DatasetFormatError(f"{where}: invalid 'requested_rewrite': {err}") from err
    return CounterFactRecord(
        case_id=case_id,
        requested_rewrite=request,
        paraphrase_prompts=_strings(obj, "paraphrase_prompts", where),
        neighborhood_prompts=_strings(obj, "neighborhood_prompts", where),
        generation_prompts=_strings(obj, "generation_prompts", where),
        target_new_id=target_new_id,
        target_true_id=target_true_id,
        extra={key: value for key, value in obj.items() if key not in _COUNTERFACT_KEYS},
    )


def counterfact_to_json(record: CounterFactRecord) -> dict[str, Any]:
    """The CounterFact JSON object of ``record``; the inverse of :func:`counterfact_from_json`."""
    request = record.requested_rewrite
    rewrite: dict[str, Any] = {"prompt": request.prompt}
    if request.relation_id is not None:
        rewrite["relation_id"] = request.relation_id
    rewrite["target_new"] = _target_json(request.target_new, record.target_new_id)
    if request.target_true is not None:
        rewrite["target_true"] = _target_json(request.target_true, record.target_true_id)
    rewrite["subject"] = request.subject
    return {
        "case_id": record.case_id,
        "requested_rewrite": rewrite,
        "paraphrase_prompts": list(record.paraphrase_prompts),
        "neighborhood_prompts": list(record.neighborhood_prompts),
        "generation_prompts": list(record.generation_prompts),
        **copy.deepcopy(record.extra),
    }


def read_counterfact(path: PathLike) -> list[CounterFactRecord]:
    """Read a CounterFact file, a JSON list (as released) or JSON Lines."""
    return [
        counterfact_from_json(obj, index=index, source=path)
        for index, obj in enumerate(_read_json_records(path, "CounterFact"))
    ]


def write_counterfact(records: Iterable[CounterFactRecord], path: PathLike, *, jsonl: bool | None = None) -> None:
    """Write ``records`` to ``path`` as a JSON list, or as JSON Lines where ``jsonl`` is true.

    ``jsonl=None`` picks JSON Lines for a path ending in ``.jsonl``.
    """
    _write_json_records([counterfact_to_json(record) for record in records], path, jsonl)


def zsre_from_json(obj: Any, *, index: int | None = None, source: PathLike | None = None) -> ZsreRecord:
    """The record of one zsRE JSON object.

    ``index`` (the record's position) and ``source`` (its file) only go into error messages.
    Raises :class:`~workbench.errors.DatasetFormatError` naming the record and the missing or
    malformed key.
    """
    where = _where("zsRE record", index, None, source)
    _check_object(obj, where)
    strings = {key: _string(obj, key, where) for key in _ZSRE_STRING_KEYS}
    return ZsreRecord(
        **strings,
        answers=_strings(obj, "answers", where),
        extra={key: value for key, value in obj.items() if key not in _ZSRE_KEYS},
    )


def zsre_to_json(record: ZsreRecord) -> dict[str, Any]:
    """The zsRE JSON object of ``record``; the inverse of :func:`zsre_from_json`."""
    obj: dict[str, Any] = {key: getattr(record, key) for key in _ZSRE_KEYS}
    obj["answers"] = list(record.answers)
    obj.update(copy.deepcopy(record.extra))
    return obj


def read_zsre(path: PathLike) -> list[ZsreRecord]:
    """Read a zsRE file such as ``zsre_mem.json``, a JSON list or JSON Lines."""
    return [
        zsre_from_json(obj, index=index, source=path) for index, obj in enumerate(_read_json_records(path, "zsRE"))
    ]


def write_zsre(records: Iterable[ZsreRecord], path: PathLike, *, jsonl: bool | None = None) -> None:
    """Write ``records`` to ``path`` as a JSON list, or as JSON Lines where ``jsonl`` is true.

    ``jsonl=None`` picks JSON Lines for a path ending in ``.jsonl``.
    """
    _write_json_records([zsre_to_json(record) for record in records], path, jsonl)


def read_texts(path: PathLike) -> list[str]:
    """A plain-text corpus: one text per non-blank line (e.g. for second-moment statistics)."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as err:
        raise DatasetFormatError(f"{os.fspath(path)}: cannot read the corpus ({err})") from err
    texts = [line.strip() for line in text.split("\n") if line.strip()]
    if not texts:
        raise DatasetFormatError(f"{os.fspath(path)}: the corpus has no text (one text per line)")
    return texts


def _read_json_records(path: PathLike, kind: str) -> list[Any]:
    """The JSON values of a file holding one JSON list, or one JSON value per line."""
    text = Path(path).read_text(encoding="utf-8-sig")
    if text.lstrip().startswith("["):
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise DatasetFormatError(f"{os.fspath(path)}: not valid JSON ({err})") from err
    records = []
    # Split on "\n" only: str.splitlines would also split inside strings holding U+2028 and the like.
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise DatasetFormatError(
                f"{os.fspath(path)}, line {lineno}: not valid JSON ({err.msg}); a {kind} file is a JSON list "
                "or JSON Lines"
            ) from err
    return records


def _write_json_records(objs: list[dict[str, Any]], path: PathLike, jsonl: bool | None) -> None:
    path = Path(path)
    if jsonl is None:
        jsonl = path.suffix == ".jsonl"
    if jsonl:
        text = "".join(json.dumps(obj, ensure_ascii=False) + "\n" for obj in objs)
    else:
        text = json.dumps(objs, ensure_ascii=False, indent=2) + "\n"
    path.write_text(text, encoding="utf-8")


def _where(kind: str, index: int | None, case_id: int | None, source: PathLike | None) -> str:
    """``"CounterFact record 3 (case_id 17) of cf.json"``, leaving out what is not known."""
    where = kind if index is None else f"{kind} {index}"
    if case_id is not None:
        where += f" (case_id {case_id})"
    if source is not None:
        where += f" of {os.fspath(source)}"
    return where


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _check_object(value: Any, where: str) -> None:
    if not isinstance(value, dict):
        raise DatasetFormatError(f"{where} must be a JSON object, got {_json_type(value)}")


def _check_known_keys(obj: dict[str, Any], known: tuple[str, ...], where: str, prefix: str) -> None:
    """Refuse keys this module would drop on writing, rather than losing them silently."""
    unknown = [key for key in obj if key not in known]
    if unknown:
        names = ", ".join(repr(prefix + key) for key in unknown)
        raise DatasetFormatError(f"{where}: unknown key(s) {names}; expected only {', '.join(known)}")


def _value(obj: dict[str, Any], key: str, where: str, prefix: str = "") -> Any:
    if key not in obj:
        raise DatasetFormatError(f"{where}: missing key {prefix + key!r}")
    return obj[key]


def _string(obj: dict[str, Any], key: str, where: str, prefix: str = "") -> str:
    value = _value(obj, key, where, prefix)
    if not isinstance(value, str):
        raise DatasetFormatError(f"{where}: {prefix + key!r} must be a string, got {_json_type(value)}")
    return value


def _strings(obj: dict[str, Any], key: str, where: str) -> tuple[str, ...]:
    value = _value(obj, key, where)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DatasetFormatError(f"{where}: {key!r} must be an array of strings")
    return tuple(value)


def _target(obj: dict[str, Any], key: str, where: str, *, required: bool) -> tuple[str | None, str | None]:
    """The ``str`` and ``id`` of ``requested_rewrite[key]``, ``(None, None)`` where it is optional and absent."""
    if key not in obj and not required:
        return None, None
    target = _value(obj, key, where, "requested_rewrite.")
    prefix = f"requested_rewrite.{key}."
    _check_object(target, f"{where}: 'requested_rewrite.{key}'")
    _check_known_keys(target, _TARGET_KEYS, where, prefix)
    target_id = _string(target, "id", where, prefix) if "id" in target else None
    return _string(target, "str", where, prefix), target_id


def _target_json(text: str, target_id: str | None) -> dict[str, str]:
    return {"str": text} if target_id is None else {"str": text, "id": target_id}


def _string_tuple(value: Any, name: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise DatasetFormatError(f"{name} must be a sequence of strings, got {value!r}")
    return tuple(value)


def _extra_dict(extra: Any, modelled: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(extra, dict):
        raise DatasetFormatError(f"extra must be a dict, got {type(extra).__name__}")
    clashes = [key for key in extra if key in modelled]
    if clashes:
        raise DatasetFormatError(f"extra repeats modelled key(s) {clashes}; set them as fields instead")
    return dict(extra)
