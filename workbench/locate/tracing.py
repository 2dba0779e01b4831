"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT", section 2).

Run the prompt clean; corrupt the subject's token embeddings with Gaussian noise; then, for each
(token, layer), restore that one clean activation inside the corrupted run and record the
probability of the answer. Restorations that bring the answer back mark states that carry the
fact. Three kinds of state are traced: the hidden state (block output), and the MLP and attention
outputs, the latter two restored over a window of layers centred on each layer.

Every restoration is independent, so this implementation runs many (token, layer) cells, each
with all its noise samples, in one batched forward pass, chunked to a memory budget; the
reference implementation runs one cell per pass.

Limits: the answer is one token (the first of a multi-token answer); noise is added to token
embeddings only (not positional embeddings), as in the paper.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from jaxtyping import Float, Int
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.errors import InvalidRequestError
from workbench.locate.batched import DEFAULT_MEMORY_BUDGET, NoiseCorruption, Patch, PatchRunner, answer_probability
from workbench.precision import check_compute_dtype
from workbench.results import JsonResult
from workbench.tokens import locate_subject

Kind = Literal["hidden", "mlp", "attn"]
KIND_HOOKS = {"hidden": families.Hooks.resid_post, "mlp": families.Hooks.mlp_out, "attn": families.Hooks.attn_out}


@dataclass(repr=False)
class TraceResult(JsonResult):
    """A causal trace: p(answer) with each (token, layer) state restored in the corrupted run."""

    prompt: str
    subject: str
    tokens: list[str]
    subject_start: int
    subject_end: int
    kind: str
    answer: str
    answer_id: int
    scores: np.ndarray
    """``[pos, layer]`` p(answer) with the state at (token, layer) restored (averaged over samples)."""
    clean_prob: float
    corrupted_prob: float
    settings: dict = field(default_factory=dict)

    @property
    def layers(self) -> list[int]:
        return list(range(self.scores.shape[1]))

    @property
    def indirect_effect(self) -> np.ndarray:
        """``[pos, layer]`` p(restored) - p(corrupted)."""
        return self.scores - self.corrupted_prob


def embedding_std(model: TransformerBridge, subjects: Sequence[str]) -> float:
    """Standard deviation of the token embeddings of ``subjects`` (ROME's noise unit)."""
    ids = [i for s in subjects for i in model.tokenizer(" " + s.strip(), add_special_tokens=False)["input_ids"]]
    ids += [i for s in subjects for i in model.tokenizer(s.strip(), add_special_tokens=False)["input_ids"]]
    if not ids:
        raise InvalidRequestError("no subject tokens to measure the embedding standard deviation on")
    embed = families.embedding(model)
    # the module's output, not its weight: some families scale embeddings inside it (Gemma: sqrt(d_model))
    with torch.no_grad():
        return embed(torch.tensor(sorted(set(ids)), device=embed.weight.device)).float().std().item()


def answer_token(model: TransformerBridge, answer: str) -> int:
    """The first token of ``answer`` as a continuation (after a space)."""
    if not answer or not answer.strip():
        raise InvalidRequestError("the answer is empty; give the text the model should predict")
    return model.tokenizer(" " + answer.strip(), add_special_tokens=False)["input_ids"][0]


def trace(
    model: TransformerBridge,
    prompt: str,
    subject: str,
    *,
    answer: str | None = None,
    kind: Kind = "hidden",
    window: int = 10,
    samples: int = 10,
    noise: float = 3.0,
    noise_scale: float | None = None,
    severed: Literal["mlp", "attn"] | None = None,
    seed: int = 0,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dtype: str = "float32",
    progress: bool = False,
) -> TraceResult:
    """Causal trace of ``prompt``'s answer over every (token, layer) of ``model``.

    Args:
        prompt: the text before the answer, e.g. ``"The Eiffel Tower is in"``.
        subject: the words of ``prompt`` naming the subject; their token embeddings are corrupted.
        answer: the answer whose probability is traced (its first token); ``None`` takes the
            model's own top prediction on the clean prompt.
        kind: ``"hidden"`` (block outputs), ``"mlp"`` or ``"attn"`` (outputs of those sublayers).
        window: for ``"mlp"``/``"attn"``, how many layers centred on each layer are restored together.
        samples: noise samples per restoration; probabilities are averaged over them.
        noise: noise standard deviation as a multiple of the subject tokens' embedding std
            (ROME's 3 x std rule); ignored when ``noise_scale`` is given.
        noise_scale: absolute noise standard deviation.
        severed: for ``kind="hidden"``, ROME's severed analysis: while restoring the hidden state
            at (token, layer), keep the MLP (or attention) outputs of that token at all later
            layers frozen at their corrupted values.
        seed: seeds the noise; equal seeds give equal traces.
        memory_budget: bytes of activations one batched forward pass may use.
        dtype: ``"bfloat16"`` runs the corrupted and restored passes' matrix products in bfloat16
            (:mod:`workbench.precision`), about 1.9x faster on a CPU with bfloat16 units; the clean
            run stays float32. Measured on smollm2-135m (``benchmarks/trace_speed.py``): cells move
            by up to ~0.01 in probability; see the docs before using it for a figure.
        progress: show a progress bar over batches.
    """
    if severed is not None and (kind != "hidden" or severed not in ("mlp", "attn")):
        raise InvalidRequestError("severed must be 'mlp' or 'attn', and only with kind='hidden'")
    (result,) = trace_kinds(model, prompt, subject, kinds=(kind,), answer=answer, window=window, samples=samples,
                            noise=noise, noise_scale=noise_scale, severed=severed, seed=seed,
                            memory_budget=memory_budget, dtype=dtype, progress=progress)
    return result


def trace_kinds(
    model: TransformerBridge,
    prompt: str,
    subject: str,
    *,
    kinds: Sequence[Kind] = ("hidden", "mlp", "attn"),
    answer: str | None = None,
    window: int = 10,
    samples: int = 10,
    noise: float = 3.0,
    noise_scale: float | None = None,
    severed: Literal["mlp", "attn"] | None = None,
    seed: int = 0,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dtype: str = "float32",
    progress: bool = False,
) -> list[TraceResult]:
    """Causal traces of several kinds at once (ROME's three-panel figure), sharing one clean run,
    one corrupted run and the batches: the same results as :func:`trace` per kind, with the same
    noise, in fewer forward passes. Arguments as for :func:`trace`; ``severed`` applies to the
    ``"hidden"`` kind."""
    unknown = [kind for kind in kinds if kind not in KIND_HOOKS]
    if unknown or not kinds:
        raise InvalidRequestError(f"kinds must be among {sorted(KIND_HOOKS)}, got {list(kinds)!r}")
    if severed is not None and severed not in ("mlp", "attn"):
        raise InvalidRequestError("severed must be 'mlp' or 'attn'")
    if samples < 1 or window < 1:
        raise InvalidRequestError("samples and window must be at least 1")
    check_compute_dtype(dtype)
    span = locate_subject(model, prompt, subject)
    n_layers = families.n_layers(model)
    scale = noise_scale if noise_scale is not None else noise * embedding_std(model, [subject])
    corruption = NoiseCorruption.draw(model, span, samples, scale, seed)

    names = {kind: [KIND_HOOKS[kind](layer) for layer in range(n_layers)] for kind in kinds}
    wanted = {name for kind_names in names.values() for name in kind_names}
    frozen_names = [KIND_HOOKS[severed](layer) for layer in range(n_layers)] if severed else []
    with torch.no_grad():
        clean_logits, clean_cache = model.run_with_cache(span.input_ids, names_filter=lambda name: name in wanted)
    clean_probs = clean_logits[0, -1].float().softmax(-1)
    answer_id = int(clean_probs.argmax()) if answer is None else answer_token(model, answer)
    sources = {("clean", name): clean_cache[name][0] for name in wanted}  # each [pos, d_model]
    if severed:
        sources.update(_corrupted_activations(model, span.input_ids, corruption, frozen_names))

    n_pos = span.input_ids.shape[1]
    # Tokens before the subject never see the noise (causal attention), so restoring them is a
    # no-op whose result is the corrupted probability; only later tokens are run.
    cells = []
    for kind in kinds:
        width = 1 if kind == "hidden" else window
        frozen = frozen_names if kind == "hidden" else []
        for token in range(span.start, n_pos):
            for layer in range(n_layers):
                patches = [Patch(names[kind][restored], token, "clean") for restored in restored_layers(layer, n_layers, width)]
                patches += [Patch(name, token, "corrupted") for name in frozen[layer + 1 :]]
                cells.append(patches)
    runner = PatchRunner(model, span.input_ids, answer_probability(answer_id), sources, corruption, memory_budget, dtype)
    corrupted_prob = runner.unpatched()
    restored = runner.run(cells, progress=progress).view(len(kinds), n_pos - span.start, n_layers)
    results = []
    for kind, kind_scores in zip(kinds, restored):
        scores = torch.full((n_pos, n_layers), corrupted_prob)
        scores[span.start :] = kind_scores
        results.append(TraceResult(
            prompt=prompt,
            subject=subject,
            tokens=[model.tokenizer.decode([int(i)]) for i in span.input_ids[0]],
            subject_start=span.start,
            subject_end=span.end,
            kind=kind,
            answer=model.tokenizer.decode([answer_id]),
            answer_id=answer_id,
            scores=scores.numpy(),
            clean_prob=float(clean_probs[answer_id]),
            corrupted_prob=corrupted_prob,
            settings={"window": 1 if kind == "hidden" else window, "samples": samples, "noise_scale": scale,
                      "noise": noise if noise_scale is None else None,
                      "severed": severed if kind == "hidden" else None, "seed": seed, "dtype": dtype},
        ))
    return results


def restored_layers(layer: int, n_layers: int, width: int) -> range:
    """Layers restored together for ``layer``: ``width`` layers centred on it, clipped at the ends."""
    return range(max(0, layer - width // 2), min(n_layers, layer - (-width // 2)))


def _corrupted_activations(
    model: TransformerBridge, input_ids: Int[torch.Tensor, "1 pos"], corruption: NoiseCorruption, names: list[str]
) -> dict[tuple[str, str], Float[torch.Tensor, "samples pos d"]]:
    """Activations at ``names`` in the corrupted run, one row per noise sample."""
    captured: dict[tuple[str, str], torch.Tensor] = {}

    def capture(name: str):
        # keyed by the name asked for: the bridge reports aliases under their canonical names
        def store(activation: torch.Tensor, hook=None) -> None:
            captured[("corrupted", name)] = activation.detach().clone()

        return store

    with torch.no_grad():
        model.run_with_hooks(
            input_ids.expand(corruption.samples, -1),
            return_type=None,
            fwd_hooks=[(families.Hooks.embed, corruption.hook(1))] + [(name, capture(name)) for name in names],
        )
    return captured
