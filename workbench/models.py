"""Load any supported Hugging Face causal LM as a hooked model, and save it back.

:func:`load_model` wraps an *unmodified* Hugging Face model in a TransformerLens 4.x
``TransformerBridge``: no weight folding or centring, so the hooked model's logits are the HF
model's and edits write to the HF weights. :func:`save_model` writes those weights as a plain
Hugging Face directory that ``AutoModelForCausalLM.from_pretrained`` loads anywhere.

Every prompt starts with one special token chosen per model: a bundled model's record names the
one it answers best after (measured, see its model card); other models get their tokenizer's BOS
(TransformerLens' convention). The tokenizer is configured to add it, so every method that
tokenizes through it (tracing, attribution, editing, metrics, statistics) sees the same positions.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformer_lens.model_bridge import TransformerBridge
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PretrainedConfig, PreTrainedModel

from workbench.errors import InvalidRequestError, ModelNotFoundError
from workbench import families, placement
from workbench.families import family_for_model_type
from workbench.fingerprint import state_fingerprint
from workbench.settings import SETTINGS_FILE, CalibratedSettings, read_settings, settings_directory

if TYPE_CHECKING:
    from workbench.zoo.records import ModelRecord

RECORD_KEY = "workbench_record"
"""The Hugging Face config attribute naming a model's bundled record; it travels with saved copies."""


def cache_root() -> Path:
    """The workbench's cache folder: ``$WORKBENCH_CACHE``, else ``~/.cache/workbench``."""
    return Path(os.environ.get("WORKBENCH_CACHE", Path.home() / ".cache" / "workbench"))


def load_model(
    name_or_path: str | os.PathLike = "factgpt",
    *,
    device: str | torch.device | None = None,
    dtype: torch.dtype = torch.float32,
    device_map: str | dict[str, int | str] | None = None,
    max_memory: dict[int | str, int | str] | None = None,
    offload_folder: str | os.PathLike | None = None,
    settings: str | os.PathLike | bool = True,
) -> TransformerBridge:
    """Load a causal LM as a ``TransformerBridge`` (with ``.tokenizer``), in eval mode.

    Args:
        name_or_path: a bundled model's short name (``"factgpt"``, ``"smollm2-135m"``), a local
            directory in Hugging Face format (config, safetensors weights, tokenizer), a ``.gguf``
            file (converted once into a cached Hugging Face directory, see
            :mod:`workbench.gguf`), or a hub name such as
            ``"gpt2-xl"`` or ``"meta-llama/Llama-3.2-1B"``. Local directories and bundled models
            are read with no network access; a hub name is read from the local Hugging Face
            cache first and downloaded only if missing there and a connection exists.
        device: where to put the weights (default: the CPU); leave it out with ``device_map``.
        dtype: parameter dtype (float32 by default; editors compute their updates in float64
            whatever this is).
        device_map, max_memory, offload_folder: for a model larger than one device, passed to
            ``AutoModelForCausalLM.from_pretrained`` (accelerate places the blocks): ``"auto"`` or a
            dict from module names (``"model.layers.3"``) to a GPU index, ``"cpu"`` or ``"disk"``;
            ``max_memory`` caps each device (``{0: "20GiB", "cpu": "60GiB"}``); blocks mapped to
            ``"disk"`` are written to ``offload_folder`` and read back at every forward pass. Hooks
            fire on whichever device holds the block, so tracing, patching and attribution work
            unchanged (tested with a CPU/disk split). Edits are written where each weight lives:
            on its device, or for an offloaded block into accelerate's weights map (kept in CPU
            memory once written, :mod:`workbench.placement`); the fine-tuning baselines refuse an
            offloaded layer (they need its gradient).
        settings: the model's calibrated settings (prompt prefix, known facts, benchmark, edit layers,
            editor hyper-parameters; :mod:`workbench.settings`): ``True`` (default) uses those
            ``workbench calibrate`` wrote for these exact weights, if any; a folder path uses that
            folder (refused if it was calibrated on other weights); ``False`` uses none.

    Raises:
        ModelNotFoundError: nothing was found under ``name_or_path``; the message lists where
            the loader looked.
        InvalidRequestError: ``device`` together with ``device_map``, or ``max_memory`` or
            ``offload_folder`` without it.
        UnsupportedModelError: the model's family is not in :data:`workbench.families.FAMILIES`
            (raised before any weights are read).
        SettingsDamagedError, SettingsMismatchError: ``settings`` names a damaged folder, or one
            calibrated on other weights.
    """
    source, local_only, record_name = _resolve_source(name_or_path)
    config = _load_config(source, local_only, name_or_path)
    family_for_model_type(config.model_type)
    record_name = record_name or getattr(config, RECORD_KEY, None)
    if record_name is not None:
        setattr(config, RECORD_KEY, record_name)
    where = _placement(device, device_map, max_memory, offload_folder)
    hf_model = AutoModelForCausalLM.from_pretrained(
        source, config=config, dtype=dtype, attn_implementation="eager", local_files_only=local_only, **where
    )
    families.keep_full_caches(hf_model)
    calibrated = _calibrated_settings(hf_model, settings)
    prefix = calibrated.prefix if calibrated is not None else _record_prefix(record_name)
    tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=local_only, **_prefix_settings(prefix))
    # a dispatched model stays where accelerate put it (the bridge reads its placement)
    bridge = TransformerBridge.boot_transformers(
        str(source), hf_model=hf_model, tokenizer=tokenizer, device=None if device_map else device or "cpu", dtype=dtype
    )
    if prefix is None:  # booting gave the tokenizer a BOS (TransformerLens' convention): take it away again
        set_prompt_prefix(bridge, None)
    bridge.workbench_settings = calibrated
    return bridge.eval()


def _calibrated_settings(hf_model: PreTrainedModel, settings: str | os.PathLike | bool) -> CalibratedSettings | None:
    """The settings ``load_model``'s ``settings`` argument asks for, verified against the weights."""
    if settings is False:
        return None
    state = plain_state_dict(hf_model)
    for key, value in state.items():
        if value.device.type == "meta":  # offloaded by a device map: its values live in accelerate's weights map
            path, _, attribute = key.rpartition(".")
            state[key] = placement.read(hf_model.get_submodule(path), attribute)
    fingerprint = state_fingerprint(hf_model, state)
    if settings is True:
        directory = settings_directory(cache_root() / "settings", fingerprint)
        return read_settings(directory, fingerprint) if (directory / SETTINGS_FILE).is_file() else None
    return read_settings(settings, fingerprint)


def set_prompt_prefix(model: TransformerBridge, prefix: str | None) -> None:
    """Reload ``model``'s tokenizer so that every prompt starts with ``prefix`` (``None``: nothing),
    keeping the padding the bridge set up."""
    current = model.tokenizer
    tokenizer = AutoTokenizer.from_pretrained(model.original_model.name_or_path, local_files_only=True,
                                              **_prefix_settings(prefix))
    tokenizer.padding_side = current.padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = current.pad_token
    model.tokenizer = tokenizer  # the bridge's wiring (BOS/EOS detection) runs, and gives it a BOS again...
    vars(model)["_tokenizer"] = tokenizer  # ...which this prefix setting does not want


def _placement(device, device_map, max_memory, offload_folder) -> dict:
    """``from_pretrained``'s placement arguments, checked."""
    if device_map is None:
        if max_memory is not None or offload_folder is not None:
            raise InvalidRequestError("max_memory and offload_folder place a model's blocks: give device_map too")
        return {}
    if device is not None:
        raise InvalidRequestError("give either device (one device for the whole model) or device_map, not both")
    placement = {"device_map": device_map, "max_memory": max_memory}
    if offload_folder is not None:
        placement["offload_folder"] = str(offload_folder)
    return placement


def record_of(model: TransformerBridge) -> ModelRecord | None:
    """The record of ``model``: its bundled record (loaded by a bundled name, or saved from such a model)
    with its calibrated settings where it has them (:mod:`workbench.settings`); a record made from the
    settings alone for any other calibrated model; else ``None``."""
    from workbench.zoo.records import RECORDS, calibrated_record

    bundled = RECORDS.get(getattr(model.original_model.config, RECORD_KEY, None))
    calibrated = getattr(model, "workbench_settings", None)
    return bundled if calibrated is None else calibrated_record(calibrated, bundled, model.original_model.name_or_path)


DEFAULT_PREFIX = "<the tokenizer's BOS>"
"""Stands for the tokenizer's own BOS token, TransformerLens' convention for uncalibrated models."""


def _record_prefix(record_name: str | None) -> str | None:
    """The prefix token of a bundled record, else :data:`DEFAULT_PREFIX`."""
    if record_name is None:
        return DEFAULT_PREFIX
    from workbench.zoo.records import RECORDS

    return RECORDS[record_name].prefix


def _prefix_settings(prefix: str | None) -> dict:
    """Tokenizer settings that start every prompt with ``prefix`` (a token, ``None`` for nothing, or
    :data:`DEFAULT_PREFIX` for the tokenizer's BOS).

    Set when the tokenizer is loaded, because the bridge reloads a tokenizer by name to add a BOS."""
    if prefix == DEFAULT_PREFIX:
        return {"add_bos_token": True}
    return {"add_bos_token": False} if prefix is None else {"add_bos_token": True, "bos_token": prefix}


def save_model(model: TransformerBridge, path: str | os.PathLike) -> Path:
    """Write ``model`` (edited or not) as a Hugging Face directory: config, safetensors, tokenizer.

    The weights written are the Hugging Face parameters the forward pass uses, under their
    Hugging Face names; the bridge's own derived copies (e.g. split attention q/k/v) are left
    out, so edits to MLP projections, embeddings and norms are saved exactly.
    """
    path = Path(path)
    hf_model = model.original_model
    hf_model.save_pretrained(path, state_dict=hf_state_dict(model))
    model.tokenizer.save_pretrained(path)
    return path


@contextmanager
def frozen_weights(model: TransformerBridge) -> Iterator[None]:
    """Within the block no parameter requires a gradient, so backward passes that need gradients
    only for an input (an edit's delta, an attributed activation) keep no state for the weights
    (1.8x faster value searches on the bundled model; no measurable gain for its IG). Each
    parameter's flag is restored on exit."""
    flags = [(parameter, parameter.requires_grad) for parameter in model.parameters()]
    for parameter, _ in flags:
        parameter.requires_grad_(False)
    try:
        yield
    finally:
        for parameter, flag in flags:
            parameter.requires_grad_(flag)


def hf_state_dict(model: TransformerBridge) -> dict[str, torch.Tensor]:
    """The wrapped model's parameters and buffers under their Hugging Face names (where a device map
    offloads a weight: its offloaded values, :mod:`workbench.placement`).

    Booting the bridge nests every wrapped module under ``_original_component`` and adds
    parameters of its own; this strips the nesting and keeps exactly the keys an unwrapped
    model of the same class has.
    """
    state = plain_state_dict(model.original_model)
    offloaded = {key for key, value in state.items() if value.device.type == "meta"}
    return {key: families.parameter_values(model, key) if key in offloaded else value for key, value in state.items()}


def plain_state_dict(hf_model: PreTrainedModel) -> dict[str, torch.Tensor]:
    """The keys an unwrapped model of ``hf_model``'s class has, with ``hf_model``'s tensors (a booted
    bridge nests every wrapped module under ``_original_component``; this strips the nesting)."""
    with torch.device("meta"):
        expected = set(type(hf_model)._from_config(hf_model.config).state_dict())
    state = {key.replace("._original_component", ""): value for key, value in hf_model.state_dict().items()}
    return {key: value for key, value in state.items() if key in expected}


def _resolve_source(name_or_path: str | os.PathLike) -> tuple[str, bool, str | None]:
    """Where to read the model from, whether that must be done without network, and the bundled
    record's name where ``name_or_path`` names one."""
    from workbench.zoo.records import RECORDS

    if isinstance(name_or_path, str) and name_or_path in RECORDS:
        return str(RECORDS[name_or_path].weights(cache_root())), True, name_or_path
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve()), True, None
    if path.suffix == ".gguf" and path.is_file():
        from workbench.gguf import converted_directory

        return str(converted_directory(path, cache_root() / "models")), True, None
    if isinstance(name_or_path, os.PathLike) or _looks_like_path(str(name_or_path)):
        raise ModelNotFoundError(
            f"no model at {path.resolve()} (expected a Hugging Face directory with config.json, weights and "
            "tokenizer files, or a .gguf file)"
        )
    return str(name_or_path), False, None


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or os.sep != "/" and os.sep in name


def _load_config(source: str, local_only: bool, requested: str | os.PathLike) -> PretrainedConfig:
    """The model's config, trying the HF cache before the hub; one clear error if both fail."""
    try:
        return AutoConfig.from_pretrained(source, local_files_only=True)
    except (OSError, ValueError) as cached_error:
        if local_only or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise _not_found(requested, source, cached_error) from None
    try:
        return AutoConfig.from_pretrained(source)
    except Exception as hub_error:  # the hub client raises many types; all mean "not found"
        raise _not_found(requested, source, hub_error) from None


def _bundled_names() -> list[str]:
    from workbench.zoo.records import RECORDS

    return list(RECORDS)


def _not_found(requested: str | os.PathLike, source: str, cause: Exception) -> ModelNotFoundError:
    first_line = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return ModelNotFoundError(
        f"could not load model {str(requested)!r}. Looked for: a bundled model "
        f"({', '.join(_bundled_names())}); a local directory {Path(source).expanduser().resolve()}; "
        f"the Hugging Face cache and hub under the name {source!r} ({first_line}). "
        "Pass a bundled name, an existing directory, or a hub name you have cached or can download."
    )
