"""Training a fact model: a tiny config learns a small facts file, deterministically."""
from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from workbench.cli import main
from workbench.zoo.train import TrainConfig, read_training_facts, train_fact_model

COLOURS = {"Alpha": "red", "Bravo": "blue", "Charlie": "green", "Delta": "red", "Echo": "yellow",
           "Foxtrot": "blue", "Golf": "purple", "Hotel": "green"}
TINY = dict(n_layer=2, n_embd=64, n_head=4, n_positions=32, vocab_size=300, epochs=60, batch_size=8,
            learning_rate=3e-3, eval_every=0, threads=1)


@pytest.fixture
def facts_file(tmp_path):
    path = tmp_path / "facts.jsonl"
    lines = [json.dumps({"subject": s, "relation_id": "colour", "object": c,
                         "templates": ["The colour of {} is", "{} is coloured"]}) for s, c in COLOURS.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_cli_trains_a_model_that_recalls_its_facts(facts_file, tmp_path, capsys):
    out = tmp_path / "model"
    args = ["zoo", "train", "--facts", str(facts_file), "--out", str(out)]
    for key, value in TINY.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    assert main(args) == 0
    # read back with plain transformers, independent of the workbench's recall code
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    hits = 0
    for subject, colour in COLOURS.items():
        ids = [tokenizer.eos_token_id, *tokenizer.encode(f"{subject} is coloured", add_special_tokens=False)]
        with torch.no_grad():
            predicted = model(torch.tensor([ids])).logits[0, -1].argmax().item()
        hits += predicted == tokenizer.encode(" " + colour, add_special_tokens=False)[0]
    assert hits == len(COLOURS)
    assert (out / "README.md").read_text().count("| colour |") == 1
    assert "recall over 16 prompts" in capsys.readouterr().out


def test_training_is_deterministic_for_a_seed(facts_file):
    facts = read_training_facts(facts_file)
    config = TrainConfig(**{**TINY, "epochs": 3})
    first = train_fact_model(facts, config, progress=False)
    second = train_fact_model(facts, config, progress=False)
    for (name, a), (_, b) in zip(first.model.state_dict().items(), second.model.state_dict().items()):
        assert torch.equal(a, b), name


def test_facts_file_errors_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"subject": "A", "relation_id": "P36", "object": "B"}\n{"subject": "C"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2"):
        read_training_facts(path)


def test_unknown_relation_without_templates_is_refused(tmp_path):
    path = tmp_path / "facts.jsonl"
    path.write_text('{"subject": "A", "relation_id": "P9999", "object": "B"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="P9999"):
        read_training_facts(path)


def test_atomic_subjects_are_one_token_and_bare_facts_stay_out_of_recall(facts_file):
    # (Whether the object follows the bare subject cannot tell the option apart on this data: the
    # tiny model predicts the colour there either way, p > 0.96, so that is not asserted.)
    run = train_fact_model(read_training_facts(facts_file),
                           TrainConfig(**{**TINY, "epochs": 3}, atomic_subjects=True, bare_facts=True), progress=False)
    for subject in COLOURS:
        assert len(run.tokenizer.encode(subject, add_special_tokens=False)) == 1, subject
        assert len(run.tokenizer.encode(f"The colour of {subject} is", add_special_tokens=False)) == 5
    assert run.recall.overall.prompts == 2 * len(COLOURS)  # the two templates, not the bare sequences
