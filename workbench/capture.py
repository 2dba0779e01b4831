"""Reading activations without running the rest of the model.

A forward pass is stopped, by an exception raised from the last hook it needs, as soon as every
wanted activation has been seen: reading an early layer skips the later layers and the unembedding.
Second-moment statistics and the keys and values editors read at the subject use it.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge


class _AllSeen(Exception):
    """Raised from a hook to end the forward pass once every wanted activation has been seen."""


@torch.no_grad()
def run_until(model: TransformerBridge, input_ids: torch.Tensor,
              readers: Mapping[str, Callable[[torch.Tensor], None]]) -> None:
    """Run ``model`` on ``input_ids``, calling ``readers[name](activation)`` at each hook ``name``,
    and stop the pass once every reader has been called."""
    seen: set[str] = set()

    def hook_for(name: str):
        def read(activation, hook=None):
            readers[name](activation)
            seen.add(name)
            if len(seen) == len(readers):
                raise _AllSeen

        return read

    try:
        model.run_with_hooks(input_ids, return_type=None, fwd_hooks=[(name, hook_for(name)) for name in readers])
    except _AllSeen:
        pass


def activation_until(model: TransformerBridge, input_ids: torch.Tensor, hook_name: str) -> Float[torch.Tensor, "batch pos d"]:
    """The activation at ``hook_name`` on ``input_ids``, running the model only as far as that hook."""
    captured: dict[str, torch.Tensor] = {}
    run_until(model, input_ids, {hook_name: lambda activation: captured.setdefault("value", activation.detach().clone())})
    return captured["value"]
