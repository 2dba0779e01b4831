"""The command line's top level."""
from __future__ import annotations


import pytest
import torch

import workbench
from workbench.cli import main


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert workbench.__version__ in capsys.readouterr().out


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "story" in capsys.readouterr().out


def test_trace_writes_figure_and_results(tiny_model_dirs, tmp_path, capsys):
    out = tmp_path / "traces"
    code = main(["trace", "The capital of France is", "--subject", "France", "--samples", "2",
                 "--model", str(tiny_model_dirs["gpt2"]), "--out", str(out)])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "The_capital_of_France_is.png",
        "The_capital_of_France_is_attn.json",
        "The_capital_of_France_is_hidden.json",
        "The_capital_of_France_is_mlp.json",
    ]
    assert "clean p=" in capsys.readouterr().out


def test_errors_are_reported_without_a_traceback(tiny_model_dirs, capsys):
    code = main(["trace", "The capital of France is", "--subject", "Spain", "--model", str(tiny_model_dirs["gpt2"])])
    assert code == 2
    assert "does not occur in prompt" in capsys.readouterr().err


def test_attribute_lists_top_neurons_and_saves(tiny_model_dirs, tmp_path, capsys):
    code = main(["attribute", "The capital of France is", "--steps", "4", "--top", "3",
                 "--model", str(tiny_model_dirs["gpt2"]), "--out", str(tmp_path)])
    assert code == 0
    output = capsys.readouterr().out
    assert "convergence delta" in output and len([l for l in output.splitlines() if l.strip()[:1].isdigit()]) == 3
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".png"]


def _corpus_file(path, texts):
    path.write_text("\n".join(texts[:60]) + "\n\n" + "\n".join(texts[60:]) + "\n", encoding="utf-8")
    return path


def _varied_texts(shift: int = 0) -> list[str]:
    from workbench.zoo.tiny import TINY_CORPUS

    words = TINY_CORPUS.split()  # varied word orders: enough distinct keys for a full-rank moment
    return [" ".join(words[(i * step + shift) % len(words)] for step in range(1, 12)) + f" {i}" for i in range(120)]


def test_edit_prints_before_and_after(tiny_model_dirs, capsys, tmp_path):
    code = main(["edit", "The capital of France is", "--subject", "France", "--target", "Rome", "--layer", "0",
                 "--model", str(tiny_model_dirs["gpt2"]), "--corpus", str(_corpus_file(tmp_path / "c.txt", _varied_texts()))])
    assert code == 0
    output = capsys.readouterr().out
    assert "before:" in output and "after:" in output and "rome edit of layer(s) [0]" in output


def test_edit_computes_statistics_over_the_given_corpus(tiny_model_dirs, tmp_path):
    from workbench.edit.saved import load_edit
    from workbench.edit.stats import using_corpus

    texts = _varied_texts()
    corpus = _corpus_file(tmp_path / "corpus.txt", texts)
    other = _corpus_file(tmp_path / "other.txt", _varied_texts(shift=3))
    arguments = ["edit", "The capital of France is", "--subject", "France", "--target", "Rome", "--layer", "0",
                 "--model", str(tiny_model_dirs["gpt2"])]
    assert main([*arguments, "--corpus", str(corpus), "--save", str(tmp_path / "with")]) == 0
    assert main([*arguments, "--corpus", str(other), "--save", str(tmp_path / "without")]) == 0
    model = workbench.load_model(tiny_model_dirs["gpt2"])
    request = workbench.edit.api.request_from_prompt("The capital of France is", "France", "Rome")
    with using_corpus(texts, "same-texts"), workbench.edit(model, request, "rome", layer=0) as expected:
        pass
    (name,) = expected.deltas
    torch.testing.assert_close(load_edit(tmp_path / "with").deltas[name], expected.deltas[name])
    assert not torch.allclose(load_edit(tmp_path / "without").deltas[name], expected.deltas[name])


def test_a_corpus_file_without_text_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n", encoding="utf-8")
    assert main(["edit", "The capital of France is", "--subject", "France", "--target", "Rome",
                 "--corpus", str(empty)]) == 2
    assert "no text" in capsys.readouterr().err


def test_zoo_train_boolean_options_are_flags():
    from workbench.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["zoo", "train", "--atomic-subjects"]).atomic_subjects is True
    assert parser.parse_args(["zoo", "train"]).atomic_subjects is False
    assert parser.parse_args(["zoo", "train", "--epochs", "3"]).epochs == 3


def test_zoo_train_never_overwrites_the_bundled_model_by_default(capsys, monkeypatch):
    import hashlib

    import workbench.zoo.train as train
    from workbench.cli import build_parser, main
    from workbench.zoo.records import RECORDS

    def no_training(*args, **kwargs):
        raise AssertionError("training started; it must be refused before")

    # should the refusal break, this test fails instead of overwriting the shipped model
    monkeypatch.setattr(train, "train_fact_model", no_training)
    monkeypatch.setattr(train, "save_training_run", no_training)

    parser = build_parser()
    assert parser.parse_args(["zoo", "train"]).out == "fact-model"
    with pytest.raises(SystemExit):  # a directory and --replace-bundled exclude each other
        parser.parse_args(["zoo", "train", "--out", "x", "--replace-bundled"])
    weights = RECORDS["factgpt"].folder / "model.safetensors"
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    # naming the bundled directory is refused before any training starts
    assert main(["zoo", "train", "--out", str(RECORDS["factgpt"].folder), "--epochs", "1"]) == 2
    assert "--replace-bundled" in capsys.readouterr().err
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == digest


def test_asking_more_cases_than_the_evaluation_split_names_the_cities(capsys):
    code = main(["bench", "--model", "factgpt", "--method", "ft", "--edits", "5000"])
    assert code == 2
    assert "--data cities" in capsys.readouterr().err


def test_sequential_editing_prints_a_row_per_batch(tmp_path, capsys):
    code = main(["sequential", "--model", "factgpt", "--method", "ft", "--batch-size", "1", "--batches", "2",
                 "--fresh", "2", "--held-out", "3", "--fluency-tokens", "0", "--layer", "1", "--out", str(tmp_path)])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    table = lines[lines.index("ft, batches of 1") + 3 :]
    assert [line.split()[0] for line in table[:3]] == ["0", "1", "2"]
    assert (tmp_path / "sequential_ft_2x1.json").is_file()


def test_bench_passes_set_hyper_parameters_and_refuses_unknown_ones(tmp_path, capsys):
    code = main(["bench", "--model", "factgpt", "--methods", "caching", "--edits", "2", "--fluency-tokens", "0",
                 "--set", "match='similarity'", "--set", "threshold=0.99", "--out", str(tmp_path)])
    assert code == 0
    saved = workbench.evaluate.scaling.ScalingResult.load(tmp_path / "scaling_batch_caching_2.json")
    assert saved.settings["hparams"]["caching"] == {"match": "similarity", "threshold": 0.99}
    assert saved.runs[0]["after"]["efficacy_score"] == 100.0  # a cache answers its own prompts
    capsys.readouterr()
    assert main(["bench", "--model", "factgpt", "--method", "ft", "--cases", "1", "--set", "bogus=1"]) == 2
    assert "bogus" in capsys.readouterr().err


def test_zoo_cities_writes_requests_and_how_many_the_model_knows(tmp_path, capsys):
    import json

    from workbench.data import read_counterfact
    from workbench.zoo.mass_requests import mass_requests
    from workbench.zoo.records import RECORDS

    out = tmp_path / "cities.json"
    assert main(["zoo", "cities", "--model", "factgpt", "--n", "12", "--out", str(out)]) == 0
    written = read_counterfact(out)
    tokenizer = workbench.load_model("factgpt").tokenizer
    assert written == mass_requests(tokenizer, RECORDS["factgpt"].relations(), 12)
    meta = json.loads(out.with_suffix(".meta.json").read_text())
    assert meta["cases"] == 12 and 0 <= meta["known"] <= 12 and meta["model"] == "factgpt"
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == meta
    assert main(["zoo", "cities", "--model", "not-a-model", "--out", str(out)]) == 2
