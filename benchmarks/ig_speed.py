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

Peak resident memory of each run above what the process held before it is reported beside it.

    python benchmarks/ig_speed.py [--model smollm2-135m|factgpt] [--steps 20] [--repeats 1] [--out FILE]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from captum.attr import IntegratedGradients

import workbench
from workbench import families
from workbench.evaluate.resources import PeakMemory
from workbench.locate.attribution import attribute
from workbench.tokens import encode

from report import emit

PROMPTS = {"factgpt": "The capital of Burkina Faso is", "smollm2-135m": "The Eiffel Tower is located in the city of",
           "gemma3-270m": "The Eiffel Tower is located in the city of"}


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
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(PROMPTS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=10, help="steps per pass in the reference loop (its default: 10)")
    parser.add_argument("--out", help="also write the report to this JSON file")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    prompt = PROMPTS[args.model]
    loops = {  # name: (batch size, shared activation read)
        "reference_loop": (args.batch_size, False),
        "one_batch_loop": (args.steps, True),
    }
    times: dict[str, list[float]] = {"batched": [], "batched_bfloat16": [], **{name: [] for name in loops}}
    peak_mb: dict[str, float] = {}
    attribute(model, prompt, steps=2)  # warm-up: first-call costs belong to neither side

    def timed(name: str, run):
        with PeakMemory() as peak:
            started = time.perf_counter()
            result = run()
            times[name].append(time.perf_counter() - started)
        peak_mb[name] = max(peak_mb.get(name, 0.0), peak.megabytes_above_start)
        return result

    for _ in range(args.repeats):
        batched = timed("batched", lambda: attribute(model, prompt, steps=args.steps))
        reduced = timed("batched_bfloat16", lambda: attribute(model, prompt, steps=args.steps, dtype="bfloat16"))
        for name, (batch_size, shared_read) in loops.items():
            looped = timed(name, lambda: layer_by_layer(model, prompt, batched.answer_id, args.steps, batch_size,
                                                        shared_read))
    best = {name: min(values) for name, values in times.items()}
    report = {
        "model": args.model,
        "prompt": prompt,
        "layers": model.cfg.n_layers,
        "neurons_per_layer": model.cfg.d_mlp,
        "steps": args.steps,
        "reference_batch_size": args.batch_size,
        "seconds": best,
        "speedup_vs_reference_loop": best["reference_loop"] / best["batched"],
        "speedup_vs_one_batch_loop": best["one_batch_loop"] / best["batched"],
        "speedup_bfloat16_vs_reference_loop": best["reference_loop"] / best["batched_bfloat16"],
        "bfloat16_max_abs_difference": float(np.abs(reduced.attributions - batched.attributions).max()),
        "bfloat16_largest_completeness_delta": float(np.abs(reduced.deltas).max()),
        "max_abs_difference": float(np.abs(batched.attributions - looped).max()),
        "max_abs_attribution": float(np.abs(looped).max()),
        "largest_completeness_delta": float(np.abs(batched.deltas).max()),
        "peak_megabytes_above_start": peak_mb,
        "threads": torch.get_num_threads(),
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
