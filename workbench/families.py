"""The one place that knows model families.

Locate and edit methods need, for any supported causal LM, the Hugging Face module that is the
MLP output projection of a layer (the matrix ROME, MEMIT and knowledge-neuron editing write to),
its weight layout, the MLP input projection(s), the embedding, the unembedding, and the
TransformerLens hook names of the activations they read. This module answers those questions
from the model's ``config.model_type`` and nothing else; no other module branches on families.

Layouts: GPT-2 stores its projections as ``Conv1D`` with weight ``[d_in, d_out]``; every other
family here uses ``nn.Linear`` with weight ``[d_out, d_in]``. :meth:`Projection.matrix` hides
the difference by returning a ``[d_out, d_in]`` *view* of the live weight, so an in-place update
of the view is an update of the model.

Limits: only the families listed in :data:`FAMILIES` are supported; mixture-of-experts MLPs and
models whose MLP output projection is fused with other weights are not.
"""
from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import torch
from jaxtyping import Float, Int
from torch import nn
from transformers.cache_utils import Cache

from workbench.errors import LayerOutOfRangeError, UnsupportedModelError
from workbench import placement

if TYPE_CHECKING:
    from transformer_lens.model_bridge import TransformerBridge

Layout = Literal["conv1d", "linear"]


@dataclass(frozen=True)
class Family:
    """Where a model family keeps the parts the workbench reads and writes.

    Paths are dotted attribute paths in the Hugging Face model; ``{}`` is the layer index.
    """

    name: str
    model_types: tuple[str, ...]
    layer: str
    mlp_in: tuple[str, ...]
    mlp_out: str
    embedding: str
    unembedding: str
    final_norm: str
    layout: Layout
    position_embedding: str | None = None
    """Learned positional embeddings added to the token embeddings before block 0 (GPT-2)."""
    block_returns_tuple: bool = False
    """Whether a block returns ``(hidden_states, ...)`` rather than the hidden states (GPT-J)."""
    sliding_window: bool = False
    """Whether some layers attend within a sliding window (Gemma 3). Hugging Face then keeps only the
    window's keys and values in those layers' caches, which the workbench's cut and resumed passes
    cannot continue or crop; :func:`keep_full_caches` gives such a model full caches instead (the
    attention masks still apply the window, so outputs are unchanged)."""
    mlp_out_norm: str | None = None
    """A normalisation applied to the MLP output before it joins the residual stream (Gemma 2/3's
    ``post_feedforward_layernorm``): the MLP output projection then writes a vector the norm
    rescales, so a wanted change of the residual stream must be mapped through it
    (:func:`workbench.edit.norms.pre_norm_change`)."""


LLAMA = Family(
    name="llama",
    model_types=("llama", "mistral", "qwen2"),
    layer="model.layers.{}",
    mlp_in=("model.layers.{}.mlp.gate_proj", "model.layers.{}.mlp.up_proj"),
    mlp_out="model.layers.{}.mlp.down_proj",
    embedding="model.embed_tokens",
    unembedding="lm_head",
    final_norm="model.norm",
    layout="linear",
)

FAMILIES: tuple[Family, ...] = (
    Family(
        name="gpt2",
        model_types=("gpt2",),
        layer="transformer.h.{}",
        mlp_in=("transformer.h.{}.mlp.c_fc",),
        mlp_out="transformer.h.{}.mlp.c_proj",
        embedding="transformer.wte",
        unembedding="lm_head",
        final_norm="transformer.ln_f",
        layout="conv1d",
        position_embedding="transformer.wpe",
    ),
    Family(
        name="gpt-neox",
        model_types=("gpt_neox",),
        layer="gpt_neox.layers.{}",
        mlp_in=("gpt_neox.layers.{}.mlp.dense_h_to_4h",),
        mlp_out="gpt_neox.layers.{}.mlp.dense_4h_to_h",
        embedding="gpt_neox.embed_in",
        unembedding="lm_head",
        final_norm="gpt_neox.final_layer_norm",
        layout="linear",
    ),
    Family(
        name="gpt-j",
        model_types=("gptj",),
        layer="transformer.h.{}",
        mlp_in=("transformer.h.{}.mlp.fc_in",),
        mlp_out="transformer.h.{}.mlp.fc_out",
        embedding="transformer.wte",
        unembedding="lm_head",
        final_norm="transformer.ln_f",
        layout="linear",
        block_returns_tuple=True,
    ),
    LLAMA,
    # Gemma 3 (text): Llama's module paths, with alternating sliding-window and global attention, four
    # RMSNorms per block (pre and post attention, pre and post MLP, gain 1 + w), embeddings scaled by
    # sqrt(d_model) inside the embedding module, a gated GELU MLP and an unembedding tied to the embedding.
    replace(LLAMA, name="gemma3", model_types=("gemma3_text",), sliding_window=True,
            mlp_out_norm="model.layers.{}.post_feedforward_layernorm"),
)


def family_for_model_type(model_type: str) -> Family:
    """The :class:`Family` of a Hugging Face ``config.model_type``; raises if unsupported."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    known = sorted(t for f in FAMILIES for t in f.model_types)
    raise UnsupportedModelError(
        f"model_type {model_type!r} is not a supported family; supported: {', '.join(known)}. "
        "To add one, give workbench.families.FAMILIES an entry naming its MLP projections and a tiny-config "
        "test (docs/adding-a-model-family.md)."
    )


def family_of(model: TransformerBridge) -> Family:
    """The :class:`Family` of a loaded model."""
    return family_for_model_type(model.original_model.config.model_type)


def n_layers(model: TransformerBridge) -> int:
    """Number of transformer blocks."""
    return model.cfg.n_layers


def check_layer(model: TransformerBridge, layer: int) -> int:
    """Return ``layer`` if it indexes a block of ``model``, else raise :class:`LayerOutOfRangeError`."""
    count = n_layers(model)
    if not isinstance(layer, int) or isinstance(layer, bool) or not 0 <= layer < count:
        raise LayerOutOfRangeError(f"layer {layer!r} is out of range: this model has layers 0..{count - 1}")
    return layer


def hf_module(model: TransformerBridge, path: str) -> nn.Module:
    """The Hugging Face module at dotted ``path``, looking through the bridge's wrappers.

    Booting a ``TransformerBridge`` replaces submodules of the wrapped model with bridge
    components that keep the original under ``_original_component``; the original module's
    parameters are the ones the forward pass uses, so this is where edits must write.
    """
    module: nn.Module = model.original_model
    for part in path.split("."):
        module = getattr(_unwrap(module), part)
    return _unwrap(module)


def _parameter_location(model: TransformerBridge, name: str) -> tuple[nn.Module, str]:
    """(module, attribute) holding the parameter ``name``; an unknown name raises."""
    path, _, attribute = name.rpartition(".")
    try:
        module = hf_module(model, path)
    except AttributeError:
        module = None
    if not isinstance(getattr(module, attribute, None), nn.Parameter):
        raise UnsupportedModelError(f"the model has no parameter named {name!r}")
    return module, attribute


def parameter_values(model: TransformerBridge, name: str) -> torch.Tensor:
    """The values of the parameter ``name``: the live tensor, or for a weight offloaded by a device
    map, its offloaded copy (:mod:`workbench.placement`)."""
    return placement.read(*_parameter_location(model, name))


def set_parameter(model: TransformerBridge, name: str, values: torch.Tensor) -> None:
    """Write ``values`` into the parameter ``name`` (in place; where offloaded, into its weights map)."""
    placement.write(*_parameter_location(model, name), values)


def add_to_parameter(model: TransformerBridge, name: str, increment: torch.Tensor) -> None:
    """Add ``increment`` to the parameter ``name`` (in place; where offloaded, in its weights map)."""
    placement.add(*_parameter_location(model, name), increment)


def _unwrap(module: nn.Module) -> nn.Module:
    while "_original_component" in module._modules:
        module = module._modules["_original_component"]
    return module


@dataclass(frozen=True)
class Projection:
    """A linear map of the model, as stored: the module, its HF parameter name and its layout."""

    module: nn.Module
    name: str
    layout: Layout

    @property
    def weight(self) -> nn.Parameter:
        """The live parameter, in its stored layout (empty, on ``meta``, where a device map offloads it)."""
        return self.module.weight

    def matrix(self) -> Float[torch.Tensor, "d_out d_in"]:
        """A ``[d_out, d_in]`` view of the weight's values (``y = W x``): of the live weight, so that
        writes go to the model, except where a device map offloads it (then a copy: write through
        :class:`workbench.edit.session.EditResult`)."""
        values = placement.read(self.module, "weight")
        return values.T if self.layout == "conv1d" else values

    def to_stored(self, change: Float[torch.Tensor, "d_out d_in"]) -> torch.Tensor:
        """A ``[d_out, d_in]`` change of the matrix in the parameter's stored layout and dtype."""
        stored = change.T if self.layout == "conv1d" else change
        return stored.to(self.weight.dtype)

    @property
    def d_in(self) -> int:
        return self.matrix().shape[1]

    @property
    def d_out(self) -> int:
        return self.matrix().shape[0]


def mlp_out_projection(model: TransformerBridge, layer: int) -> Projection:
    """The MLP output projection of ``layer`` (GPT-2 ``c_proj``, Llama ``down_proj``, ...).

    Its input is the MLP "key" activation (ROME's k, Geva et al.'s memory coefficients) and
    its rows of ``matrix().T`` are the FFN value vectors.
    """
    family = family_of(model)
    path = family.mlp_out.format(check_layer(model, layer))
    return Projection(hf_module(model, path), f"{path}.weight", family.layout)


def mlp_in_projections(model: TransformerBridge, layer: int) -> tuple[Projection, ...]:
    """The MLP input projection(s) of ``layer``: one for GPT-2/NeoX/GPT-J, gate and up for Llama."""
    family = family_of(model)
    paths = [p.format(check_layer(model, layer)) for p in family.mlp_in]
    return tuple(Projection(hf_module(model, p), f"{p}.weight", family.layout) for p in paths)


def embedding(model: TransformerBridge) -> nn.Embedding:
    """The token embedding module (``[d_vocab, d_model]`` weight)."""
    return hf_module(model, family_of(model).embedding)


def unembedding(model: TransformerBridge) -> nn.Linear:
    """The unembedding (``lm_head``) module, ``[d_vocab, d_model]`` weight; may be tied to the embedding."""
    return hf_module(model, family_of(model).unembedding)


def final_norm(model: TransformerBridge) -> nn.Module:
    """The normalisation applied to the residual stream before the unembedding."""
    return hf_module(model, family_of(model).final_norm)


def keep_full_caches(hf_model: nn.Module) -> None:
    """Make every forward pass of ``hf_model`` that would start a key/value cache start a full one
    (every position of every layer kept), where its family has sliding-window layers; others are
    left as they are. Called once by :func:`workbench.models.load_model`."""
    if not family_for_model_type(hf_model.config.model_type).sliding_window:
        return
    from transformers import DynamicCache

    def full_cache(module, args, kwargs):
        use_cache = kwargs.get("use_cache")
        if kwargs.get("past_key_values") is None and (use_cache or use_cache is None and module.config.use_cache):
            kwargs["past_key_values"] = DynamicCache()  # no config: full layers everywhere
        return args, kwargs

    hf_model.register_forward_pre_hook(full_cache, with_kwargs=True)


class _PassThrough(nn.Module):
    """Stands in for a skipped block: returns its input hidden states, as the block would return them."""

    def __init__(self, returns_tuple: bool) -> None:
        super().__init__()
        self.returns_tuple = returns_tuple

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        return (hidden_states,) if self.returns_tuple else hidden_states


class _FirstRowsBlock(nn.Module):
    """Runs a block on the batch's first ``active`` rows only; the other rows pass through unchanged.

    The rows' keys and values for the positions before the pass (a cache passed in) are cut to the
    active rows for this block's layer; the cache is good for nothing else afterwards."""

    def __init__(self, block: nn.Module, layer: int, active: int, returns_tuple: bool) -> None:
        super().__init__()
        self.block, self.layer, self.active, self.returns_tuple = block, layer, active, returns_tuple

    def forward(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any):
        batch, active = hidden_states.shape[0], self.active

        def first_rows(value: Any) -> Any:
            # per-row arguments (masks, rotary tables, position ids) have a leading batch axis and
            # at least two axes; 1-d ones (cache positions) are shared by every row
            if isinstance(value, torch.Tensor):
                return value[:active] if value.dim() >= 2 and value.shape[0] == batch else value
            if isinstance(value, tuple):
                return tuple(first_rows(item) for item in value)
            if isinstance(value, Cache) and len(value.layers) > self.layer and value.layers[self.layer].is_initialized:
                cached = value.layers[self.layer]
                cached.keys, cached.values = cached.keys[:active], cached.values[:active]
            return value

        args = tuple(first_rows(value) for value in args)
        kwargs = {name: first_rows(value) for name, value in kwargs.items()}
        output = self.block(hidden_states[:active], *args, **kwargs)
        ran = output[0] if self.returns_tuple else output
        merged = torch.cat([ran, hidden_states[active:]])
        return (merged, *output[1:]) if self.returns_tuple else merged


@contextmanager
def blocks_started(model: TransformerBridge, starts: int | Sequence[int]) -> Iterator[None]:
    """Within this context the model's forward pass starts each batch row at its own block.

    ``starts`` is one block for every row, or one per row in ascending order (row ``r`` enters
    block ``starts[r]``): block ``b`` then runs only the rows started at or below it, which are the
    batch's first rows, and passes the others through. A pass given ``inputs_embeds`` = each row's
    residual stream entering its start block (positional embeddings included) computes what the
    whole model computes from there, at the cost of the blocks each row runs. Learned positional
    embeddings are replaced by zeros; keys and values of skipped blocks are not written to a cache
    passed in, and a cache passed in with rows started at different blocks is spent afterwards.
    The blocks' bridge hooks fire for the blocks that run, with the rows that run (the first ones,
    so row indices keep their meaning)."""
    family = family_of(model)
    parent_path, _, _ = family.layer.rpartition(".")
    blocks = hf_module(model, parent_path)  # the list holding the blocks as the model calls them
    row_starts = [starts] if isinstance(starts, int) else list(starts)
    if not row_starts or any(later < earlier for earlier, later in zip(row_starts, row_starts[1:])):
        raise ValueError(f"starts must be one block or blocks in ascending order, got {starts!r}")
    for start in {row_starts[0], row_starts[-1]}:
        check_layer(model, start)
    originals = list(blocks)
    handle = None
    if family.position_embedding is not None:
        handle = hf_module(model, family.position_embedding).register_forward_hook(
            lambda module, args, output: torch.zeros_like(output))
    try:
        for layer in range(row_starts[-1]):
            active = bisect.bisect_right(row_starts, layer)
            if active == 0:
                blocks[layer] = _PassThrough(family.block_returns_tuple)
            elif not isinstance(starts, int):
                blocks[layer] = _FirstRowsBlock(originals[layer], layer, active, family.block_returns_tuple)
        yield
    finally:
        for layer in range(row_starts[-1]):
            blocks[layer] = originals[layer]
        if handle is not None:
            handle.remove()


def run_from_block(model: TransformerBridge, first: int | Sequence[int],
                   hidden: Float[torch.Tensor, "batch pos d_model"], **kwargs: Any):
    """The Hugging Face model's output when ``hidden`` enters block ``first`` (one block, or one
    per row in ascending order; see :func:`blocks_started`); ``kwargs`` go to the model
    (``past_key_values``, ``logits_to_keep``...)."""
    if not isinstance(first, int) and len(first) != hidden.shape[0]:
        raise ValueError(f"{len(first)} start blocks for {hidden.shape[0]} rows")
    with blocks_started(model, first):
        return model.original_model(inputs_embeds=hidden, **kwargs)


def block_input(args: tuple, kwargs: dict) -> Float[torch.Tensor, "batch pos d_model"]:
    """The residual stream a block's forward pre-hook (``with_kwargs=True``) sees entering it, detached."""
    return (args[0] if args else kwargs["hidden_states"]).detach()


class _Stop(Exception):
    """Ends a forward pass once the wanted residual stream has been read."""


@torch.no_grad()
def residual_entering(model: TransformerBridge, input_ids: Int[torch.Tensor, "batch pos"],
                      layer: int) -> Float[torch.Tensor, "batch pos d_model"]:
    """The residual stream entering block ``layer`` (right-padded rows need no mask); the blocks from
    ``layer`` on are not run."""
    return residuals_entering(model, input_ids, [layer])[layer]


@torch.no_grad()
def residuals_entering(model: TransformerBridge, input_ids: Int[torch.Tensor, "batch pos"],
                       layers: Sequence[int]) -> dict[int, Float[torch.Tensor, "batch pos d_model"]]:
    """The residual stream entering each block of ``layers``, from one pass that stops at the last of
    them (right-padded rows need no mask)."""
    captured: dict[int, torch.Tensor] = {}
    last = max(check_layer(model, layer) for layer in layers)

    def capture(layer: int):
        def read(module, args, kwargs):
            captured[layer] = block_input(args, kwargs)
            if layer == last:
                raise _Stop
        return read

    family = family_of(model)
    handles = [hf_module(model, family.layer.format(layer)).register_forward_pre_hook(capture(layer), with_kwargs=True)
               for layer in set(layers)]
    try:
        model.original_model(input_ids, use_cache=False)
    except _Stop:
        pass
    finally:
        for handle in handles:
            handle.remove()
    return captured


@contextmanager
def recording_block_inputs(model: TransformerBridge) -> Iterator[dict[int, torch.Tensor]]:
    """Within this context every forward pass records the residual stream entering each block into
    the dict yielded, ``{layer: [batch, pos, d_model]}`` (the last pass's values)."""
    family = family_of(model)
    captured: dict[int, torch.Tensor] = {}

    def recorder(layer: int):
        def record(module, args, kwargs):
            captured[layer] = block_input(args, kwargs)

        return record

    handles = [hf_module(model, family.layer.format(layer)).register_forward_pre_hook(recorder(layer), with_kwargs=True)
               for layer in range(n_layers(model))]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


class Hooks:
    """TransformerLens hook names, uniform across families thanks to the bridge.

    Shapes are ``[batch, pos, d]`` with ``d`` the width named in each docstring.
    """

    embed = "hook_embed"
    """Token embeddings, ``d_model`` (before positional embeddings where those are added)."""

    @staticmethod
    def resid_pre(layer: int) -> str:
        """Residual stream entering block ``layer``, ``d_model``."""
        return f"blocks.{layer}.hook_resid_pre"

    @staticmethod
    def resid_post(layer: int) -> str:
        """Residual stream leaving block ``layer`` (ROME's hidden state h_i^(l)), ``d_model``."""
        return f"blocks.{layer}.hook_resid_post"

    @staticmethod
    def mlp_out(layer: int) -> str:
        """MLP output added to the residual stream (after the post-MLP norm where there is one), ``d_model``."""
        return f"blocks.{layer}.hook_mlp_out"

    @staticmethod
    def mlp_value(layer: int) -> str:
        """Output of the MLP output projection (ROME's value ``W k``), ``d_model``: the MLP output
        before a post-MLP norm where the family has one (Gemma 3), else :meth:`mlp_out` itself."""
        return f"blocks.{layer}.mlp.hook_out"

    @staticmethod
    def attn_out(layer: int) -> str:
        """Attention output added to the residual stream, ``d_model``."""
        return f"blocks.{layer}.hook_attn_out"

    @staticmethod
    def mlp_key(layer: int) -> str:
        """Input of the MLP output projection (the FFN neurons' activations), ``d_mlp``."""
        return f"blocks.{layer}.mlp.out.hook_in"
