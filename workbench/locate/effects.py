"""Average indirect effects of causal tracing over many facts, and the edit-layer recommendation.

Following ROME (Meng et al. 2022, Figure 2), each traced token is given a *role* relative to the
subject (first / middle / last subject token, first subsequent token, further tokens, last
token); per fact, the indirect effect p(restored) - p(corrupted) is averaged within each role,
then averaged over facts. Tokens before the subject have no role and are left out.

The layer where the MLP's average indirect effect at the last subject token peaks is where
ROME finds the fact is written into the residual stream, and is the default edit layer.
"""
from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from transformer_lens.model_bridge import TransformerBridge

from workbench.engines import LocalEngine, RayEngine
from workbench.errors import InvalidRequestError
from workbench.locate.tracing import Kind, embedding_std, trace_kinds
from workbench.results import JsonResult

ROLES = (
    "first subject token",
    "middle subject tokens",
    "last subject token",
    "first subsequent token",
    "further tokens",
    "last token",
)
LAST_SUBJECT = ROLES.index("last subject token")


def token_roles(n_tokens: int, subject_start: int, subject_end: int) -> list[int | None]:
    """The role index of each position (``None`` before the subject).

    A one-token subject counts as the last subject token; the prompt's last token is always
    "last token", even when it is also the first token after the subject.
    """
    roles: list[int | None] = [None] * n_tokens
    for position in range(subject_start, subject_end):
        roles[position] = 1
    roles[subject_start] = 0
    roles[subject_end - 1] = LAST_SUBJECT
    if subject_end < n_tokens:
        roles[subject_end] = 3
    for position in range(subject_end + 1, n_tokens):
        roles[position] = 4
    roles[n_tokens - 1] = 5
    return roles


@dataclass(repr=False)
class AverageIndirectEffect(JsonResult):
    """Indirect effect per token role and layer, averaged over facts, for each traced kind."""

    kinds: list[str]
    roles: list[str]
    effects: dict
    """kind -> ``[role, layer]`` mean indirect effect."""
    counts: dict
    """kind -> facts contributing to each role (a role can be absent, e.g. middle tokens)."""
    n_facts: int
    clean_prob: float
    """Mean clean p(answer) over the facts."""
    corrupted_prob: float
    """Mean corrupted p(answer) over the facts."""
    settings: dict = field(default_factory=dict)

    def recommend_layer(self) -> int:
        """The layer whose MLP output has the largest average indirect effect at the last subject token."""
        return int(np.argmax(self._mlp_last_subject()))

    def recommend_layers(self, width: int = 3) -> list[int]:
        """The ``width`` consecutive layers with the largest summed MLP effect at the last subject token
        (a MEMIT layer range)."""
        curve = self._mlp_last_subject()
        if not 1 <= width <= len(curve):
            raise InvalidRequestError(f"width must be between 1 and {len(curve)}, got {width}")
        sums = np.convolve(curve, np.ones(width), mode="valid")
        start = int(np.argmax(sums))
        return list(range(start, start + width))

    def _mlp_last_subject(self) -> np.ndarray:
        if "mlp" not in self.effects:
            raise InvalidRequestError("the layer recommendation needs an MLP trace: include 'mlp' in kinds")
        return self.effects["mlp"][LAST_SUBJECT]


def trace_many(
    model: TransformerBridge,
    prompts: Sequence[tuple[str, str] | tuple[str, str, str]],
    *,
    kinds: Sequence[Kind] = ("hidden", "mlp", "attn"),
    samples: int = 10,
    noise: float = 3.0,
    window: int = 10,
    severed: Literal["mlp", "attn"] | None = None,
    seed: int = 0,
    dtype: str = "float32",
    progress: bool = True,
    engine: LocalEngine | RayEngine | None = None,
) -> AverageIndirectEffect:
    """Trace every ``(prompt, subject[, answer])`` and average the indirect effects by token role.

    The noise scale is ``noise`` times the embedding std over *all* the subjects' tokens, as in
    ROME, so every fact is corrupted equally. A missing answer is the model's top prediction.
    ``severed`` runs ROME's severed analysis for the ``"hidden"`` kind (the MLP or attention
    outputs after each restored layer kept at their corrupted values); comparing it with a plain
    hidden trace shows how much of each layer's effect passes through the MLPs. ``engine`` runs
    the facts elsewhere, e.g. ``RayEngine(workers=4)`` (:mod:`workbench.engines`); each fact's
    trace depends only on the fact and these settings, so the result is the same. ``dtype`` as
    for :func:`~workbench.locate.tracing.trace`.
    """
    if not prompts:
        raise InvalidRequestError("trace_many needs at least one (prompt, subject) pair")
    scale = noise * embedding_std(model, [item[1] for item in prompts])
    settings = {"samples": samples, "noise": noise, "noise_scale": scale, "window": window, "severed": severed,
                "seed": seed, "dtype": dtype}
    work = partial(_fact_effects, kinds=tuple(kinds), samples=samples, noise_scale=scale, window=window,
                   severed=severed, seed=seed, dtype=dtype)
    facts = (engine or LocalEngine()).map(model, work, [tuple(item) for item in prompts], desc="tracing facts",
                                          progress=progress)
    effects, counts = {}, {}
    for kind in kinds:
        per_fact = np.stack([fact.effects[kind] for fact in facts])  # [facts, roles, layers], NaN: role absent
        present = ~np.isnan(per_fact[:, :, 0])  # [facts, roles]
        counts[kind] = present.sum(axis=0).tolist()
        sums = np.where(present[:, :, None], per_fact, 0.0).sum(axis=0)
        effects[kind] = sums / np.maximum(1, present.sum(axis=0))[:, None]
    return AverageIndirectEffect(
        kinds=list(kinds),
        roles=list(ROLES),
        effects=effects,
        counts=counts,
        n_facts=len(prompts),
        clean_prob=float(np.mean([fact.clean_prob for fact in facts])),
        corrupted_prob=float(np.mean([fact.corrupted_prob for fact in facts])),
        settings=settings,
    )


@dataclass(frozen=True)
class FactEffects:
    """One fact's share of :func:`trace_many`: per kind, the indirect effect averaged within each
    token role (``[roles, layers]``, NaN rows for roles the prompt lacks), and its probabilities."""

    effects: dict
    clean_prob: float
    corrupted_prob: float


def _fact_effects(model: TransformerBridge, item: tuple, *, kinds: tuple[str, ...], samples: int, noise_scale: float,
                  window: int, severed: str | None, seed: int, dtype: str) -> FactEffects:
    prompt, subject = item[0], item[1]
    answer = item[2] if len(item) > 2 else None
    effects = {}
    for result in trace_kinds(model, prompt, subject, kinds=kinds, answer=answer, samples=samples,
                              noise_scale=noise_scale, window=window, severed=severed, seed=seed, dtype=dtype):
        roles = token_roles(len(result.tokens), result.subject_start, result.subject_end)
        by_role = np.full((len(ROLES), result.indirect_effect.shape[1]), np.nan)
        for role in range(len(ROLES)):
            rows = [p for p, r in enumerate(roles) if r == role]
            if rows:
                by_role[role] = result.indirect_effect[rows].mean(axis=0)
        effects[result.kind] = by_role
    return FactEffects(effects, result.clean_prob, result.corrupted_prob)
