"""The edit layer, measured two ways.

1. **Tracing** (:func:`default_edit_layer`): ROME edits the layer whose MLP output has the largest
   average indirect effect at the last subject token (Meng et al. 2022, Figure 2, window of 10
   layers); measured on the model instead of hard-coded per architecture, on facts the model knows,
   passed in (the entry points pass a bundled model's known facts from its record), and cached.
2. **Editing** (:func:`workbench.evaluate.layer_sweep.sweep_edit_layers`): the layer where the edits themselves score best, every
   candidate layer tried on the same cases (Hase et al. 2023 found the two often disagree).

A bundled model's record names its layer per method and says which of the two chose it.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.edit.stats import DEFAULT_CACHE, statistics_fingerprint
from workbench.errors import InvalidRequestError
from workbench.locate.effects import trace_many

N_FACTS = 48
"""Facts the entry points trace for the recommendation."""
TRACING_WINDOW = 10
"""Layers restored together around each traced MLP (the paper's window on GPT-2 XL's 48 layers);
models with fewer than 20 layers use half their depth (3 for the 6-layer factgpt)."""


def tracing_window(model: TransformerBridge) -> int:
    """The tracing window used for ``model``'s recommendation."""
    return min(TRACING_WINDOW, max(1, families.n_layers(model) // 2))


def default_edit_layer(
    model: TransformerBridge,
    prompts: Sequence[tuple[str, str] | tuple[str, str, str]] | None = None,
    *,
    cache_dir: str | Path | None = DEFAULT_CACHE,
) -> int:
    """The recommended edit layer of ``model`` from the average MLP indirect effect.

    Args:
        prompts: ``(prompt, subject[, answer])`` facts the model knows; needed unless the
            recommendation is cached.
        cache_dir: the recommendation is cached here under the model's weights fingerprint (the
            unedited model's inside :func:`workbench.edit.stats.pinned_statistics`, so edits that
            accumulate keep the layer measured before them).
    """
    window = tracing_window(model)
    cache = Path(cache_dir) / f"edit_layer_w{window}_{statistics_fingerprint(model)[:32]}.json" if cache_dir else None
    if cache is not None and cache.is_file():
        return int(json.loads(cache.read_text())["layer"])
    if prompts is None:
        raise InvalidRequestError(
            "no edit layer given and no tracing prompts for this model: pass layer=..., or compute "
            "one with workbench.edit.layers.default_edit_layer(model, prompts) on facts it knows"
        )
    effect = trace_many(model, prompts, kinds=["mlp"], samples=5, window=window, progress=False)
    layer = effect.recommend_layer()
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"layer": layer, "n_facts": effect.n_facts}))
    return layer



def edit_layer(model: TransformerBridge, layer: int | None) -> int:
    """``layer`` checked against the model, or the recommended layer when it is ``None``."""
    if layer is None:
        return default_edit_layer(model)
    if not isinstance(layer, int):
        raise InvalidRequestError(f"this method edits one layer; got {layer!r}")
    return families.check_layer(model, layer)


def refuse_last_layer(model: TransformerBridge, layer: int, method: str) -> None:
    """ROME and MEMIT write at the subject's last token; the last layer's output there reaches no
    later position, so an edit of it cannot change the answer."""
    if layer == families.n_layers(model) - 1:
        raise InvalidRequestError(
            f"{method} cannot edit the last layer ({layer}): what it writes at the subject's last token reaches no "
            "later position; choose an earlier layer"
        )
