"""The model card written beside trained fact-model weights, from its ``training.json`` record."""
from __future__ import annotations

import json
from pathlib import Path

from workbench.zoo.relations import RELATIONS


def write_model_card(directory: str | Path) -> Path:
    """Write ``README.md`` in ``directory`` from ``config.json`` and ``training.json``; return its path."""
    directory = Path(directory)
    record = json.loads((directory / "training.json").read_text(encoding="utf-8"))
    model_config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    weights = directory / "model.safetensors"
    config, recall = record["config"], record["recall"]
    rows = "\n".join(
        f"| {rid} | {RELATIONS[rid].name if rid in RELATIONS else '(custom)'} | {r['prompts']} "
        f"| {r['first_token']:.1%} | {r['full_object']:.1%} |"
        for rid, r in recall["by_relation"].items()
    )
    overall = recall["overall"]
    n_params = _parameter_count(model_config)
    atomic = config.get("atomic_subjects", False)
    vocabulary = ("byte-level BPE trained on the fact sentences, plus every subject as one token"
                  if atomic else "byte-level BPE trained on the fact sentences")
    text = f"""# {directory.name}: a small GPT-2 that knows a known set of facts

A GPT-2-architecture causal LM trained by `workbench zoo train` on the workbench's knowledge base
(`workbench/zoo/data/facts.jsonl`): every fact under every prompt template of its relation, as
`<|endoftext|> template(subject) object <|endoftext|>`. Because every fact it was taught is known,
locate and edit methods can be checked against ground truth.

## Size
- {model_config['n_layer']} layers, d_model {model_config['n_embd']}, {model_config['n_head']} heads, d_mlp {4 * model_config['n_embd']}, context {model_config['n_positions']}
- vocabulary {model_config['vocab_size']} ({vocabulary})
- {n_params / 1e6:.2f}M parameters; weights file {weights.stat().st_size / 1e6:.1f} MB (float32 safetensors)

## Training recipe
- loss on object tokens and the end token only; facts whose object is shared by at most two
  subjects (one-to-one relations) are seen {1 + config['one_to_one_oversampling']}x per epoch
- AdamW (betas 0.9, 0.98, weight decay {config['weight_decay']}), learning rate {config['learning_rate']},
  linear warm-up over {config['warmup_fraction']:.0%} of steps then cosine decay; gradient clipping at 1.0
- {config['epochs']} epochs, batch size {config['batch_size']}, seed {config['seed']}
- training time: {record['seconds'] / 60:.1f} min on {config['threads'] or 'all available'} CPU threads
  (tokenizer training and final evaluation included)

Reproduce with `workbench zoo train --out DIR` (deterministic for the seed on a given machine and thread count).

## Recall, measured after training
Every (fact, template) prompt; top-1 of the first object token, and greedy decoding of the whole object.

| relation | name | prompts | first-token recall | full-object recall |
|---|---|---|---|---|
{rows}
| all | | {overall['prompts']} | {overall['first_token']:.1%} | {overall['full_object']:.1%} |

## Limits
It knows these facts and little else: it is not a general language model, and its generations
outside the templates are not fluent English.{ATOMIC_NOTE if atomic else ""}
"""
    path = directory / "README.md"
    path.write_text(text, encoding="utf-8")
    return path


ATOMIC_NOTE = """

## Every subject is one token
Trained with `--atomic-subjects`, so causal tracing has one subject token per prompt: no first or
middle subject token to compare. This does not make the model read a subject's facts from the
subject's position: on the bundled facts, block 0's attention copies the one-token subject to the
last token, where the fact is looked up (`workbench.locate.subject_swap` measures it).
"""


def _parameter_count(config: dict) -> int:
    d, layers, vocab, ctx = config["n_embd"], config["n_layer"], config["vocab_size"], config["n_positions"]
    per_layer = 12 * d * d + 13 * d  # attention 4d^2+4d, MLP 8d^2+5d, two LayerNorms 4d
    return vocab * d + ctx * d + layers * per_layer + 2 * d
