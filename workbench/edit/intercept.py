"""Answering some inputs from outside the weights: the hook that lets memory-based editors act as the model.

Caching and SERAC (Mitchell et al. 2022, "Memory-Based Model Editing at Scale") leave the base
model's weights alone and change what the model *answers*: for an input in an edit's scope, the
next-token distribution comes from the edit memory instead of the base model. Everything in the
workbench that reads a model (the CounterFact metrics, fluency, top predictions) calls the wrapped
Hugging Face model's forward pass, so that is where the memory is consulted: a forward hook on
``model.original_model`` sees the input ids, the attention mask, ``logits_to_keep`` and the KV cache,
and rewrites the logits it returns.

For each logit row the hook works out its *prefix*, the real tokens (padding removed) the row
predicts the next token after. With a KV cache only the new tokens are fed at each step, so the
hook keeps each cache's token history (keyed by the cache object the model returns and is given
back) and prepends it. Rules (:class:`Rule`) receive all rows of one forward pass at once and return
replacement logits for the rows they answer. A rule that reads the residual stream entering a block
(SERAC's scope classifier) names that block when installed; the pass's residual there is recorded
and handed to the rule with the rows, so the rule need not run the model's lower blocks again.

Limits: a forward pass fed ``inputs_embeds`` (integrated gradients, some patching) has no token
ids and is passed through unchanged, so attribution sees the base model; a KV cache created before
the first rule was installed has no known history and its rows are passed through; only the final
logits change, so hooks on the model's activations (tracing) still see the base model.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from jaxtyping import Float
from transformer_lens.model_bridge import TransformerBridge

from workbench import families
from workbench.state import state_of


@dataclass(frozen=True)
class LogitRows:
    """The logit rows of one forward pass, with the token prefix each one predicts after."""

    prefixes: list[tuple[int, ...]]
    """Per row: the real tokens up to and including the predicting position (BOS included); empty
    for a padding position."""
    logits: Float[torch.Tensor, "rows vocab"]
    inputs: list[tuple[int, ...]]
    """The real tokens of each input sequence of the pass (with a KV cache: its whole history)."""
    input_of: list[int]
    """Per row: the input sequence it belongs to (its prefix is a leading part of that input)."""
    residuals: dict[int, list[Float[torch.Tensor, "tokens d_model"]]]
    """Per block named by a rule: the residual stream entering it at each real token of each input;
    empty for a pass fed a KV cache (its earlier tokens were not run)."""


Rule = Callable[[LogitRows], dict[int, torch.Tensor]]
"""A memory's answer: row index -> the logits ([vocab]) that replace the base model's for that row."""


class Interceptor:
    """The forward hook of one model: keeps token histories and applies the installed rules."""

    def __init__(self, model: TransformerBridge) -> None:
        self.model = model
        self.rules: dict[int, Rule] = {}  # owner id -> rule, applied in installation order
        self.residual_layers: dict[int, tuple[int, ...]] = {}  # owner id -> the blocks whose input its rule reads
        self._recorders: dict[int, torch.utils.hooks.RemovableHandle] = {}  # block -> its pre-hook
        self._recorded: dict[int, torch.Tensor] = {}  # block -> this pass's residual entering it
        self._histories: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # KV cache -> its ids [n, t]
        self._suspended = 0
        self._handle = model.original_model.register_forward_hook(self._hook, with_kwargs=True)
        # a pass that ends early (a hook stopping it) leaves residuals no rule reads: the next pass drops them
        self._forget = model.original_model.register_forward_pre_hook(lambda *_: self._recorded.clear())

    def remove(self) -> None:
        self._handle.remove()
        self._forget.remove()
        for handle in self._recorders.values():
            handle.remove()
        self._recorded.clear()

    def record_residuals(self) -> None:
        """Keep a pre-hook on exactly the blocks named in :attr:`residual_layers`."""
        wanted = {layer for layers in self.residual_layers.values() for layer in layers}
        for layer in set(self._recorders) - wanted:
            self._recorders.pop(layer).remove()
        for layer in wanted - set(self._recorders):
            block = families.hf_module(self.model, families.family_of(self.model).layer.format(layer))
            self._recorders[layer] = block.register_forward_pre_hook(self._recorder(layer), with_kwargs=True)

    def _recorder(self, layer: int):
        def record(module, args, kwargs):
            if not self._suspended:
                self._recorded[layer] = families.block_input(args, kwargs)
        return record

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """A block in which forward passes see the base model only (for rules that run the model)."""
        self._suspended += 1
        try:
            yield
        finally:
            self._suspended -= 1

    def _hook(self, module, args, kwargs, output):
        recorded, self._recorded = self._recorded, {}
        new_ids = args[0] if args else kwargs.get("input_ids")
        if self._suspended or new_ids is None or not self.rules:
            return output
        ids, past = new_ids, kwargs.get("past_key_values")
        if past is not None:
            if past not in self._histories:
                return output  # a cache from before the memory: its prefixes are unknown
            ids = torch.cat([self._histories[past], new_ids], dim=1)
        mask = kwargs.get("attention_mask")
        mask = torch.ones_like(ids) if mask is None else mask[:, -ids.shape[1]:]  # [n, tokens so far]
        returned = getattr(output, "past_key_values", None)
        if returned is not None:
            self._histories[returned] = ids
        offset = ids.shape[1] - new_ids.shape[1]  # logits_to_keep counts positions in the new tokens
        real = [ids[row][mask[row].bool()].tolist() for row in range(ids.shape[0])]
        prefixes, input_of = [], []
        for row, position in _kept_positions(kwargs.get("logits_to_keep"), *new_ids.shape):
            absolute = offset + position
            n_real = int(mask[row, : absolute + 1].sum())
            prefixes.append(tuple(real[row][:n_real]) if mask[row, absolute] else ())
            input_of.append(row)
        shape = output.logits.shape
        residuals = {} if past is not None else {
            layer: [hidden[row][mask[row].bool()] for row in range(ids.shape[0])] for layer, hidden in recorded.items()}
        rows = LogitRows(prefixes, output.logits.reshape(-1, shape[-1]), [tuple(r) for r in real], input_of, residuals)
        answers = {index: logits for rule in list(self.rules.values()) for index, logits in rule(rows).items()}
        if answers:
            replaced = rows.logits.clone()
            for index, logits in answers.items():
                replaced[index] = logits.to(replaced.dtype)
            output["logits"] = replaced.view(shape)
        return output


def _kept_positions(keep, n: int, new: int) -> list[tuple[int, int]]:
    """(row, position among the new tokens) of each logit row, in the order the model returns them."""
    if isinstance(keep, torch.Tensor) and keep.dtype == torch.bool:
        return [tuple(pair) for pair in keep.nonzero().tolist()]
    last = new if keep is None or (isinstance(keep, int) and keep == 0) else int(keep)
    return [(row, position) for row in range(n) for position in range(new - last, new)]


def install_rule(model: TransformerBridge, owner: object, rule: Rule, *,
                 residual_layers: Sequence[int] = ()) -> Interceptor:
    """Answer through ``rule`` until :func:`remove_rule` is called with the same ``owner``; the rows
    it gets carry the residual stream entering each block of ``residual_layers``."""
    for layer in residual_layers:
        families.check_layer(model, layer)  # before anything is installed
    state = state_of(model)
    if state.interceptor is None:
        state.interceptor = Interceptor(model)
    interceptor = state.interceptor
    if residual_layers:
        interceptor.residual_layers[id(owner)] = tuple(residual_layers)
        interceptor.record_residuals()
    interceptor.rules[id(owner)] = rule
    return interceptor


def remove_rule(model: TransformerBridge, owner: object) -> None:
    """Stop answering through ``owner``'s rule; the hook goes once no rule is left."""
    interceptor = state_of(model).interceptor
    if interceptor is None:
        return
    interceptor.rules.pop(id(owner), None)
    if interceptor.residual_layers.pop(id(owner), None) is not None:
        interceptor.record_residuals()
    if not interceptor.rules:
        interceptor.remove()
        state_of(model).interceptor = None


@contextmanager
def suspended(model: TransformerBridge) -> Iterator[None]:
    """A block in which ``model``'s forward passes skip its rules (for rules that run the base model)."""
    interceptor = state_of(model).interceptor
    if interceptor is None:
        yield
        return
    with interceptor.suspended():
        yield


def forget_rules(model: TransformerBridge) -> None:
    """Remove every rule of ``model``: for code that resets a model without restoring each edit."""
    state = state_of(model)
    if state.interceptor is not None:
        state.interceptor.remove()
        state.interceptor = None


def has_rules(model: TransformerBridge) -> bool:
    """Whether a memory-based edit currently answers for ``model``."""
    return state_of(model).interceptor is not None


def forced_logits(token: int, vocab: int, device, dtype=torch.float32) -> Float[torch.Tensor, "vocab"]:
    """Logits that put (numerically) all probability on ``token``."""
    logits = torch.full((vocab,), -1e4, device=device, dtype=dtype)
    logits[token] = 0.0
    return logits

