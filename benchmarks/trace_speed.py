"""Causal tracing speed: the workbench's batched trace vs a one-restoration-per-pass loop.

A full trace: every token x every layer, for the three kinds (hidden states; MLP and attention
outputs over a window of layers). The baseline follows the structure of ROME's reference
implementation (Meng et al. 2022, ``trace_important_states`` / ``trace_important_window``): for
every (token, layer) one forward pass over a batch holding the clean prompt in row 0 and the
noised copies in the other rows, restoring the states from row 0 in the same pass. Both run in
this process on the same model and prompt, and are timed alternately so machine load affects
both alike; the ratio is what is reported. A third timing runs the batched trace with every
patched run starting at block 0 (``LAYER_GROUPS = 1``), which measures what starting each run at
its first patched block saves.

    python benchmarks/trace_speed.py [--model factgpt|smollm2-135m] [--samples 10] [--repeats 3] [--no-reference]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import workbench
from workbench import families
from workbench.locate import batched as batched_runs
from workbench.locate.tracing import embedding_std, restored_layers, trace_kinds
from workbench.tokens import locate_subject

PROMPTS = {"factgpt": ("The capital of Burkina Faso is", "Burkina Faso"),
           "smollm2-135m": ("The Eiffel Tower is located in the city of", "Eiffel Tower")}


HOOKS = {"hidden": families.Hooks.resid_post, "mlp": families.Hooks.mlp_out, "attn": families.Hooks.attn_out}


@torch.no_grad()
def reference_style_trace(model, prompt: str, subject: str, kind: str, window: int, samples: int, scale: float,
                          seed: int) -> np.ndarray:
    """p(answer) per (token, layer), one restoration per forward pass, clean run in row 0."""
    span = locate_subject(model, prompt, subject)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((samples, span.end - span.start, model.cfg.d_model), generator=generator) * scale
    inputs = span.input_ids.expand(samples + 1, -1)
    answer = model(span.input_ids, return_type="logits")[0, -1].argmax()
    n_pos, n_layers = span.input_ids.shape[1], model.cfg.n_layers
    scores = np.zeros((n_pos, n_layers))

    def corrupt(embeddings, hook):
        embeddings[1:, span.start : span.end] += noise
        return embeddings

    width = 1 if kind == "hidden" else window
    for token in range(n_pos):
        for layer in range(n_layers):
            def restore(activation, hook, token=token):
                activation[1:, token] = activation[0, token]
                return activation

            restorations = [(HOOKS[kind](l), restore) for l in restored_layers(layer, n_layers, width)]
            logits = model.run_with_hooks(inputs, return_type="logits", fwd_hooks=[("hook_embed", corrupt), *restorations])
            scores[token, layer] = logits[1:, -1].softmax(-1)[:, answer].mean().item()
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="factgpt")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--no-reference", action="store_true", help="skip the one-restoration-per-pass baseline")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    prompt, subject = PROMPTS[args.model]
    scale = 3.0 * embedding_std(model, [subject])
    layer_groups = batched_runs.LAYER_GROUPS

    def batched_trace(groups: int):
        batched_runs.LAYER_GROUPS = groups
        try:
            return trace_kinds(model, prompt, subject, kinds=list(HOOKS), window=args.window, samples=args.samples,
                               noise_scale=scale)
        finally:
            batched_runs.LAYER_GROUPS = layer_groups

    seconds: dict[str, list[float]] = {"batched": [], "from_block_0": [], "reference_style": []}
    agreement = {}
    for _ in range(args.repeats):
        started = time.perf_counter()
        batched = batched_trace(layer_groups)
        seconds["batched"].append(time.perf_counter() - started)
        started = time.perf_counter()
        from_block_0 = batched_trace(1)
        seconds["from_block_0"].append(time.perf_counter() - started)
        agreement["from_block_0"] = max(float(np.abs(b.scores - r.scores).max()) for b, r in zip(batched, from_block_0))
        if not args.no_reference:
            started = time.perf_counter()
            baseline = [reference_style_trace(model, prompt, subject, kind, args.window, args.samples, scale, seed=0)
                        for kind in HOOKS]
            seconds["reference_style"].append(time.perf_counter() - started)
            agreement["reference_style"] = max(float(np.abs(b.scores - r).max()) for b, r in zip(batched, baseline))
    best = {name: min(values) for name, values in seconds.items() if values}
    report = {
        "model": args.model,
        "prompt": prompt,
        "kinds": list(HOOKS),
        "cells": int(sum(b.scores.size for b in batched)),
        "samples": args.samples,
        **{f"{name}_seconds": value for name, value in best.items()},
        **{f"speedup_vs_{name}": value / best["batched"] for name, value in best.items() if name != "batched"},
        "max_abs_difference": agreement,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
