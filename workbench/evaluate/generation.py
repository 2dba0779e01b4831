"""Free-generation metrics: does the edited model *say* the new object, not only score it higher?

CounterFact's scores compare teacher-forced probabilities of two given objects. Users read generated
text, and judged on that ("in the wild", QAEdit, Yang et al. 2025, arXiv 2502.11177) reported editing
success fell from 96.8% to 38.5% for the same edits. Here every prompt of a case is continued by
greedy decoding for the target's length in tokens plus :data:`MARGIN`, cut at the end of the first
line or sentence, and judged as a whole against the object it should name:

* **exact match**: the normalised generation starts with the normalised object, word by word
  ("Rome, the capital" matches "Rome"; "Romania" does not);
* **token F1**: the F1 of the normalised words of the generation against the object's (SQuAD's
  answer F1, Rajpurkar et al. 2016), which credits partial answers and penalises run-on text.

Efficacy and paraphrase prompts are judged against ``target_new``, neighbourhood prompts against
``target_true`` (the answer that must survive). Normalisation: lower case, punctuation and the
articles a/an/the removed, whitespace collapsed.

Limits: greedy decoding only (no sampling), and an object the model names after a preamble ("the city
of Rome") counts as a miss for exact match and partly for F1, as in QAEdit's first-answer judging.
"""
from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

import torch
from transformer_lens.model_bridge import TransformerBridge

from workbench.data import CounterFactRecord
from workbench.sampling import sample_top_k
from workbench.tokens import length_batches, target_ids

MARGIN = 3
"""Tokens generated beyond the judged object's own length."""
MAX_ROWS = 256
"""Prompts generated together in one batch (each step projects only the last position onto the vocabulary)."""
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_SENTENCE_END = re.compile(r"\n|[.!?](\s|$)")


def normalise(text: str) -> list[str]:
    """The words of ``text`` in lower case, without punctuation or articles."""
    text = "".join(" " if ch in string.punctuation else ch for ch in text.lower())
    return _ARTICLES.sub(" ", text).split()


def first_statement(text: str) -> str:
    """``text`` up to its first line break or sentence end (a full stop inside "U.S." ends it too)."""
    found = _SENTENCE_END.search(text)
    return text if found is None else text[: found.start()]


def exact_match(generation: str, answer: str) -> bool:
    """Whether the normalised ``generation`` starts with the normalised ``answer``, word by word."""
    words, wanted = normalise(generation), normalise(answer)
    return bool(wanted) and words[: len(wanted)] == wanted


def token_f1(generation: str, answer: str) -> float:
    """F1 (0-1) of the normalised words of ``generation`` against those of ``answer``."""
    words, wanted = normalise(generation), normalise(answer)
    common = sum((Counter(words) & Counter(wanted)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(words), common / len(wanted)
    return 2 * precision * recall / (precision + recall)


def greedy_answers(model: TransformerBridge, prompts: Sequence[str], answers: Sequence[str]) -> list[str]:
    """Each prompt's greedy continuation, ``len(tokens of its answer) + MARGIN`` tokens long at most,
    cut at the end-of-text token and at the end of the first line or sentence."""
    encoded = [model.tokenizer(prompt)["input_ids"] for prompt in prompts]
    budgets = [len(target_ids(model, answer)) + MARGIN for answer in answers]
    eos = model.tokenizer.eos_token_id
    texts: list[str] = [""] * len(prompts)
    for rows in length_batches([len(ids) for ids in encoded], MAX_ROWS):
        steps = max(budgets[row] for row in rows)
        tokens = sample_top_k(model, [encoded[row] for row in rows], steps, top_k=1,
                              generator=torch.Generator().manual_seed(0))  # top-1: greedy
        for row, generated in zip(rows, tokens.tolist()):
            generated = generated[: budgets[row]]
            if eos in generated:
                generated = generated[: generated.index(eos)]
            texts[row] = first_statement(model.tokenizer.decode(generated, skip_special_tokens=True)).strip()
    return texts


def generation_metrics(model: TransformerBridge, records: Sequence[CounterFactRecord],
                       keep_texts: bool = False) -> list[dict]:
    """Per case, the exact-match rate and mean token F1 (both in %) of each prompt group's greedy
    generations: ``efficacy_generation_em``, ``efficacy_generation_f1``, and the same for
    ``paraphrase`` and ``neighborhood`` (judged against ``target_true``). ``keep_texts`` adds the
    generations under ``generations`` (group -> texts)."""
    rows = []  # (case index, group, prompt, answer)
    for index, record in enumerate(records):
        request = record.requested_rewrite
        for group, prompts in record.prompts_by_group().items():
            answer = request.target_true if group == "neighborhood" else request.target_new
            rows.extend((index, group, prompt, answer) for prompt in prompts)
    texts = greedy_answers(model, [row[2] for row in rows], [row[3] for row in rows])
    per_case: list[dict] = [{"case_id": record.case_id} for record in records]
    for (index, group, _, answer), text in zip(rows, texts):
        values = per_case[index]
        values.setdefault(f"{group}_generation_em", []).append(100.0 * exact_match(text, answer))
        values.setdefault(f"{group}_generation_f1", []).append(100.0 * token_f1(text, answer))
        if keep_texts:
            values.setdefault("generations", {}).setdefault(group, []).append(text)
    for values in per_case:
        for key, items in values.items():
            if key.endswith(("_em", "_f1")):
                values[key] = sum(items) / len(items)
    return per_case
