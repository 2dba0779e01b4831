"""Train a GPT-2-architecture model until it recalls a knowledge base of facts.

The recipe (chosen to make one-to-one relations such as capitals learnable on a CPU):

* every (fact, template) pair is one short sequence ``BOS template(subject) object EOS``;
* the loss is taken on the object tokens and the end-of-text token only: the subjects are
  names the model cannot predict, and spending capacity on them slows fact learning;
* relations with few facts per object (one-to-one relations) are sampled more often;
* AdamW with linear warm-up and cosine decay; sequences are bucketed by length so batches
  carry little padding (right padding needs no attention mask in a causal model).

Training is deterministic for a seed on a given machine and thread count.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from workbench.data import Fact
from workbench.errors import DatasetFormatError, PromptTooLongError
from workbench.zoo.recall import RecallReport, TrainingFact, measure_recall
from workbench.zoo.relations import RELATIONS
from workbench.zoo.tokenizer import train_tokenizer


@dataclass
class TrainConfig:
    """Model size and optimisation settings of :func:`train_fact_model`."""

    n_layer: int = 6
    n_embd: int = 256
    n_head: int = 8
    n_positions: int = 64
    vocab_size: int = 4096
    epochs: int = 30
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_fraction: float = 0.03
    weight_decay: float = 0.0
    one_to_one_oversampling: int = 2
    """Extra copies per epoch of facts whose object is shared by at most 2 subjects."""
    eval_every: int = 5
    """Measure recall every this many epochs (recorded in the history; 0 disables)."""
    seed: int = 0
    threads: int | None = None
    atomic_subjects: bool = False
    """Make every subject one token (see :func:`~workbench.zoo.tokenizer.train_tokenizer`)."""
    bare_facts: bool = False
    """Also teach every fact as the bare sequence ``subject object``, with no relation words, so the
    model must produce a subject's objects at the subject's own position. Recall is still measured
    on the templates. Measured on the bundled facts (6 layers, with atomic subjects): the templates
    keep their own lookup at the last token, so this does not give ROME a subject-side fact to edit."""


def with_default_templates(facts: Iterable[Fact]) -> list[TrainingFact]:
    """Pair each fact with its relation's templates from :data:`RELATIONS`."""
    paired = []
    for fact in facts:
        if fact.relation_id not in RELATIONS:
            raise DatasetFormatError(
                f"relation {fact.relation_id!r} of {fact} has no built-in templates; "
                "give the fact a 'templates' list in the facts file"
            )
        paired.append(TrainingFact(fact, RELATIONS[fact.relation_id].templates))
    return paired


def read_training_facts(path: str | Path) -> list[TrainingFact]:
    """Read a JSONL facts file: ``subject``, ``relation_id``, ``object`` and optional ``template(s)``.

    Facts without templates use their relation's built-in ones.
    """
    result = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            fact = Fact(str(record["subject"]), str(record["relation_id"]), str(record["object"]))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise DatasetFormatError(f"{path}:{number}: expected a JSON object with subject, relation_id, object ({error})") from None
        templates = record.get("templates") or ([record["template"]] if "template" in record else None)
        if templates is None:
            result.extend(with_default_templates([fact]))
        else:
            if not all(isinstance(t, str) and t.count("{}") == 1 for t in templates):
                raise DatasetFormatError(f"{path}:{number}: every template needs exactly one '{{}}' for the subject")
            result.append(TrainingFact(fact, tuple(templates)))
    if not result:
        raise DatasetFormatError(f"{path} contains no facts")
    return result


def corpus_texts(facts: Sequence[TrainingFact]) -> list[str]:
    """Every training sentence, ``template(subject) object``."""
    return [f"{prompt} {item.fact.object}" for item in facts for prompt in item.prompts()]


def _encode_examples(
    facts: Sequence[TrainingFact], tokenizer: PreTrainedTokenizerFast, max_length: int
) -> list[tuple[list[int], int]]:
    """(token ids, index of the first object token) per (fact, template)."""
    bos = eos = tokenizer.eos_token_id
    examples = []
    for item in facts:
        answer = tokenizer.encode(" " + item.fact.object, add_special_tokens=False)
        for prompt in item.prompts():
            ids = [bos, *tokenizer.encode(prompt, add_special_tokens=False)]
            sequence = ids + answer + [eos]
            if len(sequence) > max_length:
                raise PromptTooLongError(f"training sentence longer than {max_length} tokens: {prompt!r}")
            examples.append((sequence, len(ids)))
    return examples


def _one_to_one_mask(facts: Sequence[TrainingFact]) -> list[bool]:
    sharing: dict[tuple[str, str], int] = {}
    for item in facts:
        key = (item.fact.relation_id, item.fact.object)
        sharing[key] = sharing.get(key, 0) + 1
    return [sharing[(item.fact.relation_id, item.fact.object)] <= 2 for item in facts]


def _epoch_batches(
    examples: list[tuple[list[int], int]], weights: list[int], batch_size: int, generator: torch.Generator
) -> list[list[int]]:
    """Shuffled batches of example indices, bucketed by length to limit padding."""
    pool = torch.tensor([i for i, w in enumerate(weights) for _ in range(w)])
    order = pool[torch.randperm(len(pool), generator=generator)].tolist()
    bucket = batch_size * 16
    batches = []
    for start in range(0, len(order), bucket):
        chunk = sorted(order[start : start + bucket], key=lambda i: len(examples[i][0]))
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    permutation = torch.randperm(len(batches), generator=generator).tolist()
    return [batches[i] for i in permutation]


def _collate(examples: list[tuple[list[int], int]], indices: list[int], pad: int):
    length = max(len(examples[i][0]) for i in indices)
    input_ids = torch.full((len(indices), length), pad, dtype=torch.long)
    labels = torch.full((len(indices), length), -100, dtype=torch.long)
    for row, i in enumerate(indices):
        sequence, answer_start = examples[i]
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        labels[row, answer_start : len(sequence)] = torch.tensor(sequence[answer_start:])
    return input_ids, labels


def _answer_loss(model: GPT2LMHeadModel, input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the labelled (object and end) positions only; the unembedding is applied
    to those positions alone, which saves a sixth of the compute of a full language-model loss."""
    hidden = model.transformer(input_ids=input_ids).last_hidden_state[:, :-1]  # [batch, pos-1, d_model]
    targets = labels[:, 1:]
    labelled = targets != -100
    return torch.nn.functional.cross_entropy(model.lm_head(hidden[labelled]), targets[labelled])


@dataclass
class TrainingRun:
    """What :func:`train_fact_model` produced and measured."""

    model: GPT2LMHeadModel
    tokenizer: PreTrainedTokenizerFast
    config: TrainConfig
    seconds: float
    recall: RecallReport
    history: list[dict]


def train_fact_model(
    facts: Sequence[TrainingFact], config: TrainConfig | None = None, *, progress: bool = True
) -> TrainingRun:
    """Train a tokenizer and a GPT-2 model on ``facts`` and measure its recall on all of them."""
    config = config or TrainConfig()
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(facts, config, progress)
    finally:
        torch.set_num_threads(threads_before)


def _train(facts: Sequence[TrainingFact], config: TrainConfig, progress: bool) -> TrainingRun:
    torch.manual_seed(config.seed)
    started = time.perf_counter()
    atomic_words = [item.fact.subject for item in facts] if config.atomic_subjects else []
    taught = [TrainingFact(item.fact, (*item.templates, "{}")) for item in facts] if config.bare_facts else facts
    tokenizer = train_tokenizer(corpus_texts(taught), vocab_size=config.vocab_size, atomic_words=atomic_words)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_positions=config.n_positions,
            n_embd=config.n_embd,
            n_layer=config.n_layer,
            n_head=config.n_head,
            bos_token_id=tokenizer.eos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.eos_token_id,
        )
    )
    examples = _encode_examples(taught, tokenizer, config.n_positions)
    repeats = [1 + config.one_to_one_oversampling * hard for hard in _one_to_one_mask(taught)]
    per_example = [r for r, item in zip(repeats, taught) for _ in item.templates]
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(sum(per_example) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay, betas=(0.9, 0.98)
    )
    warmup = max(1, int(config.warmup_fraction * total_steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(step / total_steps, 1.0)))),
    )
    history = []
    model.train()
    bar = tqdm(total=total_steps, desc="training", disable=not progress, unit="step")
    for epoch in range(config.epochs):
        running, count = 0.0, 0
        for batch in _epoch_batches(examples, per_example, config.batch_size, generator):
            input_ids, labels = _collate(examples, batch, tokenizer.eos_token_id)
            loss = _answer_loss(model, input_ids, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            running, count = running + loss.item(), count + 1
            bar.update(1)
        record = {"epoch": epoch + 1, "loss": running / count}
        if config.eval_every and (epoch + 1) % config.eval_every == 0 and epoch + 1 < config.epochs:
            model.eval()
            interim = measure_recall(model, tokenizer, facts)
            model.train()
            record["first_token_recall"] = interim.overall.first_token
            record["worst_relation_recall"] = min(r.first_token for r in interim.by_relation.values())
        history.append(record)
        bar.set_postfix({k: round(v, 3) for k, v in record.items()})
    bar.close()
    model.eval()
    recall = measure_recall(model, tokenizer, facts, progress=progress)
    return TrainingRun(model, tokenizer, config, time.perf_counter() - started, recall, history)


def save_training_run(run: TrainingRun, out: str | Path) -> Path:
    """Save model, tokenizer and a ``training.json`` record (config, time, recall, loss history)."""
    out = Path(out)
    run.model.save_pretrained(out)
    run.tokenizer.save_pretrained(out)
    record = {
        "config": asdict(run.config),
        "seconds": run.seconds,
        "recall": run.recall.to_dict(),
        "history": run.history,
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return out
