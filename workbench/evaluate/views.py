"""Before/after views of an edit: top predictions and greedy completions of prompts."""
from __future__ import annotations

from collections.abc import Sequence

from transformer_lens.model_bridge import TransformerBridge

from workbench.predict import greedy_completion, top_predictions


def before_after(model: TransformerBridge, prompts: Sequence[str], k: int = 3) -> dict[str, str]:
    """For each prompt, a one-line view: its top-``k`` next tokens and its greedy completion."""
    views = {}
    for prompt in prompts:
        top = ", ".join(f"{p.token.strip()!r} {p.probability:.2f}" for p in top_predictions(model, prompt, k))
        views[prompt] = f"{greedy_completion(model, prompt, max_new_tokens=6).strip()!r}  (top: {top})"
    return views
