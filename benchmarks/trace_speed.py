"""Causal tracing speed: the workbench's trace vs one restoration per forward pass, the 2022 way.

A full trace: every token x every layer, for the three kinds (hidden states; MLP and attention
outputs over a window of layers). The baseline follows the structure of ROME's reference
implementation (Meng et al. 2022, ``trace_important_states`` / ``trace_important_window``): for
every (token, layer) one forward pass over a batch holding the clean prompt in row 0 and the
noised copies in the other rows, restoring the states from row 0 in the same pass. The workbench
runs each restoration from its first restored token and block only, many per pass
(``workbench.locate.batched``), in float32 and, timed separately, with bfloat16 matrix products
(``dtype="bfloat16"``). All run in this process on the same model, prompts and noise, one after
the other per repeat so machine load affects them alike; best times, their ratios, the largest
difference of any cell from the float32 trace, and each run's peak resident memory above what the
process held before (``PeakMemory``) are reported. ``--reference-code`` also times ROME's own
``causal_trace.py``, run unmodified in this process (``benchmarks/reference_causal_trace.py``
extracts it once from a git copy; its patching is checked on the model before it is timed);
``--no-reference`` skips the re-created loop, which takes longer than the original.

    python benchmarks/trace_speed.py [--model smollm2-135m|factgpt|gemma3-270m] [--prompts 2] [--samples 3]
                                     [--repeats 1] [--no-reference] [--reference-code] [--out FILE]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import workbench
from workbench import families
from workbench.evaluate.resources import PeakMemory
from workbench.locate.tracing import embedding_std, restored_layers, trace_kinds
from workbench.tokens import locate_subject

from report import emit

PROMPTS = {
    "factgpt": [("The capital of Burkina Faso is", "Burkina Faso"), ("The capital of Norway is", "Norway")],
    "smollm2-135m": [("The Eiffel Tower is located in the city of", "Eiffel Tower"),
                     ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux")],
    "gemma3-270m": [("The Eiffel Tower is located in the city of", "Eiffel Tower"),
                    ("The mother tongue of Danielle Darrieux is", "Danielle Darrieux")],
}


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
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(PROMPTS))
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--no-reference", action="store_true", help="skip the one-restoration-per-pass baseline")
    parser.add_argument("--reference-code", action="store_true",
                        help="also time ROME's own causal_trace.py in this process (extracted by "
                             "benchmarks/reference_causal_trace.py --rome-git-dir ... beforehand)")
    parser.add_argument("--out", help="also write the report to this JSON file")
    args = parser.parse_args()
    model = workbench.load_model(args.model)
    prompts = PROMPTS[args.model][: args.prompts]

    def workbench_trace(dtype: str):
        return [trace_kinds(model, prompt, subject, kinds=list(HOOKS), window=args.window, samples=args.samples,
                            noise_scale=3.0 * embedding_std(model, [subject]), dtype=dtype)
                for prompt, subject in prompts]

    def reference_trace():
        return [[reference_style_trace(model, prompt, subject, kind, args.window, args.samples,
                                       3.0 * embedding_std(model, [subject]), seed=0) for kind in HOOKS]
                for prompt, subject in prompts]

    runs = {"float32": lambda: workbench_trace("float32"), "bfloat16": lambda: workbench_trace("bfloat16")}
    if not args.no_reference:
        runs["reference_style"] = reference_trace
    if args.reference_code:
        from reference_causal_trace import cached_reference, check_patching, load_reference
        from reference_causal_trace import reference_trace as original_trace

        causal_trace, mt = load_reference(cached_reference(), args.model)
        for prompt, subject in prompts:  # its patching must work on this model before it is timed
            check_patching(causal_trace, mt, prompt, subject, 3.0 * embedding_std(model, [subject]))
        runs["reference_code"] = lambda: [original_trace(causal_trace, mt, prompt, subject, args.samples,
                                                         3.0 * embedding_std(model, [subject]), args.window)
                                          for prompt, subject in prompts]
    seconds = {name: [] for name in runs}
    peak_mb, difference = {}, {}
    workbench_trace("float32")  # warm-up: first-call costs belong to neither side
    for _ in range(args.repeats):
        exact = None
        for name, run in runs.items():
            with PeakMemory() as peak:
                started = time.perf_counter()
                traces = run()
                seconds[name].append(time.perf_counter() - started)
            peak_mb[name] = max(peak_mb.get(name, 0.0), peak.megabytes_above_start)
            if name == "float32":
                exact = traces
                continue
            if name == "reference_code":  # its own noise draws and tokens (no BOS): not comparable cell by cell
                continue
            difference[name] = max(
                float(np.abs((other if isinstance(other, np.ndarray) else other.scores) - ours.scores).max())
                for fact, fact_exact in zip(traces, exact) for other, ours in zip(fact, fact_exact))
    best = {name: min(values) for name, values in seconds.items()}
    report = {
        "model": args.model,
        "prompts": prompts,
        "kinds": list(HOOKS),
        "samples": args.samples,
        "window": args.window,
        **{f"{name}_seconds": value for name, value in best.items()},
        **{f"speedup_{ours}_vs_{baseline}": best[baseline] / best[ours] for baseline in ("reference_style", "reference_code")
           if baseline in best for ours in ("float32", "bfloat16")},
        "speedup_bfloat16_vs_float32": best["float32"] / best["bfloat16"],
        "max_abs_difference_from_float32": difference,
        "peak_megabytes_above_start": peak_mb,
        "threads": torch.get_num_threads(),
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
