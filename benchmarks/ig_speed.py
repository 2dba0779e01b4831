"""Integrated gradients over every FFN neuron of every layer: the workbench's batched attribution
vs a layer-by-layer loop in the style of the reference knowledge-neurons implementation.

The reference (EleutherAI's knowledge-neurons, ``get_scores_for_layer``) handles one layer at a
time: a forward pass to read that layer's activation, then the integration steps in batches of
``batch_size`` (default 10 of 20 steps), each batch re-running the whole prompt with the layer's
activation at the last position replaced, forward and backward. The baseline here does the same
through TransformerLens hooks and captum. A second, more generous loop (one batch of all steps per
layer, activations of all layers read in one shared pass) is timed too and reported beside it.
The workbench batches all (layer, step) pairs together and runs only the last token, with the
earlier positions' keys and values cached. All run in this process, alternately, on the same
prompt; ratios of best times are reported, with the largest difference between attributions.

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


def layer_by_layer(model, prompt: str, answer_id: int, steps: int, batch_size: int, shared_read: bool) -> np.ndarray:
    """Reference-style IG: one layer at a time, the full prompt re-run for every batch of steps.
    ``shared_read`` reads every layer's clean activation in one pass instead of one pass per layer."""
    ids = encode(model, prompt)
    names = [families.Hooks.mlp_key(layer) for layer in range(model.cfg.n_layers)]
    if shared_read:
        _, shared = model.run_with_cache(ids, names_filter=lambda n: n in names)
    rows = []
    for name in names:
        cache = shared if shared_read else model.run_with_cache(ids, names_filter=lambda n, name=name: n == name)[1]
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
                                        method="gausslegendre", internal_batch_size=batch_size)[0].detach())
    return torch.stack(rows).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="factgpt")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=10, help="steps per pass in the reference loop (its default: 10)")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    loops = {  # name: (batch size, shared activation read)
        "reference_loop": (args.batch_size, False),
        "one_batch_loop": (args.steps, True),
    }
    times: dict[str, list[float]] = {"batched": [], **{name: [] for name in loops}}
    for _ in range(args.repeats):
        started = time.perf_counter()
        batched = attribute(model, PROMPT, steps=args.steps)
        times["batched"].append(time.perf_counter() - started)
        for name, (batch_size, shared_read) in loops.items():
            started = time.perf_counter()
            looped = layer_by_layer(model, PROMPT, batched.answer_id, args.steps, batch_size, shared_read)
            times[name].append(time.perf_counter() - started)
    best = {name: min(values) for name, values in times.items()}
    report = {
        "model": args.model,
        "prompt": PROMPT,
        "layers": model.cfg.n_layers,
        "neurons_per_layer": model.cfg.d_mlp,
        "steps": args.steps,
        "reference_batch_size": args.batch_size,
        "seconds": best,
        "speedup_vs_reference_loop": best["reference_loop"] / best["batched"],
        "speedup_vs_one_batch_loop": best["one_batch_loop"] / best["batched"],
        "max_abs_difference": float(np.abs(batched.attributions - looped).max()),
        "max_abs_attribution": float(np.abs(looped).max()),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
