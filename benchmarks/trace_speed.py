"""Causal tracing speed: the workbench's batched trace vs a one-restoration-per-pass loop.

A full trace: every token x every layer, for the three kinds (hidden states; MLP and attention
outputs over a window of layers). The baseline follows the structure of ROME's reference
implementation (Meng et al. 2022, ``trace_important_states`` / ``trace_important_window``): for
every (token, layer) one forward pass over a batch holding the clean prompt in row 0 and the
noised copies in the other rows, restoring the states from row 0 in the same pass. Both run in
this process on the same model and prompt, and are timed alternately so machine load affects
both alike; the ratio is what is reported.

    python benchmarks/trace_speed.py [--model factgpt] [--samples 10] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

import workbench
from workbench import families
from workbench.locate.tracing import embedding_std, restored_layers, trace_kinds
from workbench.tokens import locate_subject

PROMPT, SUBJECT = "The capital of Burkina Faso is", "Burkina Faso"


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
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    scale = 3.0 * embedding_std(model, [SUBJECT])
    ours, reference, agreement = [], [], 0.0
    for _ in range(args.repeats):
        started = time.perf_counter()
        batched = trace_kinds(model, PROMPT, SUBJECT, kinds=list(HOOKS), window=args.window, samples=args.samples,
                              noise_scale=scale)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        baseline = [reference_style_trace(model, PROMPT, SUBJECT, kind, args.window, args.samples, scale, seed=0)
                    for kind in HOOKS]
        reference.append(time.perf_counter() - started)
        agreement = max(float(np.abs(b.scores - r).max()) for b, r in zip(batched, baseline))
    report = {
        "model": args.model,
        "prompt": PROMPT,
        "kinds": list(HOOKS),
        "cells": int(sum(b.scores.size for b in batched)),
        "samples": args.samples,
        "batched_seconds": min(ours),
        "reference_style_seconds": min(reference),
        "speedup": min(reference) / min(ours),
        "max_abs_difference": agreement,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
