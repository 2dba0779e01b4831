"""Integrated gradients over every FFN neuron of every layer: the workbench's batched attribution
vs a layer-by-layer loop in the style of the reference knowledge-neurons implementation.

The baseline runs, for each layer in turn, captum's integrated gradients with the whole prompt
re-run at every step (steps batched, as the reference does), replacing that layer's activation at
the last position through a TransformerLens hook. The workbench batches all (layer, step) pairs
together and runs only the last token, with the earlier positions' keys and values cached. Both
run in this process, alternately, on the same prompt; the ratio of their best times is reported,
with the largest difference between their attributions.

    python benchmarks/ig_speed.py [--model factgpt] [--steps 20] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from captum.attr import IntegratedGradients

import workbench
from workbench import families
from workbench.locate.attribution import attribute
from workbench.tokens import encode

PROMPT = "The capital of Burkina Faso is"


def layer_by_layer(model, prompt: str, answer_id: int, steps: int) -> np.ndarray:
    """Reference-style IG: one layer at a time, full prompt per step."""
    ids = encode(model, prompt)
    names = [families.Hooks.mlp_key(layer) for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(ids, names_filter=lambda n: n in names)
    rows = []
    for name in names:
        clean = cache[name][0, -1]

        def forward(scaled, name=name):
            def replace(activation, hook=None):
                activation = activation.clone()
                activation[:, -1] = scaled
                return activation

            logits = model.run_with_hooks(ids.expand(len(scaled), -1), return_type="logits", fwd_hooks=[(name, replace)])
            return logits[:, -1].float().softmax(-1)[:, answer_id]

        explainer = IntegratedGradients(forward)
        rows.append(explainer.attribute(clean[None], baselines=torch.zeros_like(clean[None]), n_steps=steps,
                                        method="gausslegendre", internal_batch_size=steps)[0].detach())
    return torch.stack(rows).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="factgpt")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    batched_times, loop_times = [], []
    for _ in range(args.repeats):
        started = time.perf_counter()
        batched = attribute(model, PROMPT, steps=args.steps)
        batched_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        looped = layer_by_layer(model, PROMPT, batched.answer_id, args.steps)
        loop_times.append(time.perf_counter() - started)
    report = {
        "model": args.model,
        "prompt": PROMPT,
        "layers": model.cfg.n_layers,
        "neurons_per_layer": model.cfg.d_mlp,
        "steps": args.steps,
        "batched_seconds": min(batched_times),
        "layer_by_layer_seconds": min(loop_times),
        "speedup": min(loop_times) / min(batched_times),
        "max_abs_difference": float(np.abs(batched.attributions - looped).max()),
        "max_abs_attribution": float(np.abs(looped).max()),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
