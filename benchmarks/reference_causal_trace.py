"""Causal tracing speed of ROME's reference implementation, run unmodified on our models and prompts.

Times the 2022 reference code (Meng et al. 2022; github.com/kmeng01/rome,
``experiments/causal_trace.py``): per prompt, a full trace of the three kinds as its ``main`` runs
them, ``calculate_hidden_flow(mt, prompt, subject, samples, noise, window, kind)`` for ``kind`` in
``None`` (hidden states), ``"mlp"`` and ``"attn"``: every (token, layer) one forward pass of the
batch [clean prompt, ``samples`` noised copies] through ``trace_with_patch``, plus the clean and the
corrupted pass each call makes first. Model, prompts (``PROMPTS`` of ``trace_speed.py``), samples,
window and noise scale (3 x :func:`workbench.locate.tracing.embedding_std` of the subject, passed as
the reference's absolute ``noise`` factor) are those of ``benchmarks/trace_speed.py``, whose
``reference_style`` baseline re-creates this loop on the TransformerLens bridge; this script runs
the original code on the plain Hugging Face model instead. ``trace_speed.py --reference-code``
imports :func:`load_reference` and :func:`reference_trace` from here to time it in the same process
as the workbench's trace, which is the ratio to report (the machine's speed drifts between runs).

The reference code is not part of this repository. ``--rome-git-dir`` names a bare git copy of
kmeng01/rome (e.g. from ``git clone --bare``); the files it needs are written, as they are at that
commit, into ``<workbench cache>/reference/rome/<commit>/`` and imported from there:
``experiments/causal_trace.py``, ``util/__init__.py``, ``util/nethook.py``,
``util/logit_lens.py`` (imported by ``util/__init__``) and the licence. Later runs reuse that
folder without ``--rome-git-dir``.

What is adapted, from outside, without editing any reference file:

* Stub modules in ``sys.modules`` for names ``causal_trace.py`` imports but tracing never uses:
  ``dsets`` (``KnownsDataset``: the knowns data set of its ``main``), ``util.globals``
  (``DATA_DIR``; the real module reads ``globals.yml`` from the working directory),
  ``util.runningstats`` (``Covariance``, ``tally``) and ``rome.tok_dataset`` (four names), the last
  two used only by ``get_embedding_cov`` (multivariate noise). ``datasets``, ``matplotlib`` and
  ``tqdm`` are installed and imported for real.
* ``causal_trace.layername`` knows GPT-2/GPT-J (``transformer.h``) and GPT-NeoX only; for other
  families it is replaced by a function giving the Llama module names (``model.embed_tokens``,
  ``model.layers.{i}``, ``.mlp``, ``.self_attn``; from :mod:`workbench.families`) and delegating to
  the original for the families it knows (factgpt is GPT-2: unchanged). ``ModelAndTokenizer``
  counts layers with a GPT-2/NeoX regex, so ``mt.num_layers`` is set from the config for the others.
* ``causal_trace.make_inputs`` puts its tensors on ``"cuda"`` by default and ``calculate_hidden_flow``
  calls it without a device: it is wrapped to pass the model's device (the CPU here).
That is all. In Transformers 5 the decoder blocks (GPT-2, Llama) return a tensor and the attention
modules a tuple; the reference's ``untuple`` handles both and ``nethook.TraceDict``'s in-place
``edit_output`` works on either. Before timing, the script checks that restoring the last token's
block output at the last layer (the reference's ``trace_with_patch``) gives back the clean
probability, i.e. that the patching really happens.

The model is the one ``workbench.load_model`` loads (its Hugging Face directory, found through the
bundled record), read with ``AutoModelForCausalLM.from_pretrained`` in float32 with eager
attention, as the workbench loads it. Differences from ``trace_speed.py`` that stay, because
removing them would mean editing the reference:

* Tokens: the reference encodes with ``tokenizer.encode(prompt)`` of the plain tokenizer, which
  puts no prefix token before these prompts; the workbench puts the record's ``<|endoftext|>``
  first, so our traces have one position more. The report lists the reference's tokens.
* Noise: the reference draws it with ``numpy.random.RandomState(1)`` on every pass (float64 noise
  added to the float32 embeddings); ours come from a torch generator. Scores therefore differ from
  our trace's; only times are compared.
* The reference batch includes the clean row, so each pass runs ``samples + 1`` rows; the clean
  and corrupted probabilities are recomputed for each kind (``forward_passes`` in the report counts
  every pass, so times per pass can be compared too).

    python benchmarks/reference_causal_trace.py --rome-git-dir PATH [--model smollm2-135m|factgpt]
                                                 [--prompts 2] [--samples 3] [--window 10] [--out FILE]

``--subject-last-only`` traces only the subject's last token (the reference's
``token_range="subject_last"``), for a quick check that everything runs.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import subprocess
import sys
import time
import types
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

import workbench
from workbench.families import family_for_model_type
from workbench.locate.tracing import embedding_std
from workbench.models import cache_root
from workbench.zoo.records import RECORDS

from report import emit

from trace_speed import PROMPTS

REFERENCE_FILES = ("experiments/causal_trace.py", "util/__init__.py", "util/nethook.py", "util/logit_lens.py",
                   "LICENSE")
"""Files of kmeng01/rome needed to import ``experiments/causal_trace.py`` (with the stubs below)."""

STUBS = {
    "dsets": ("KnownsDataset",),
    "util.globals": ("DATA_DIR",),
    "util.runningstats": ("Covariance", "tally"),
    "rome": (),
    "rome.tok_dataset": ("TokenizedDataset", "dict_to_", "flatten_masked_batch", "length_collation"),
}
"""Modules ``causal_trace.py`` imports, with the names it takes from them, that tracing never uses."""

KINDS = (None, "mlp", "attn")
"""The reference's kinds, as its ``main`` loops over them: hidden states, MLP and attention outputs."""


def reference_directory() -> Path:
    return cache_root() / "reference" / "rome"


def extract_reference(git_dir: str | Path) -> Path:
    """Write :data:`REFERENCE_FILES` at ``git_dir``'s HEAD into the cache (once per commit); their folder."""
    commit = subprocess.run(["git", "--git-dir", str(git_dir), "rev-parse", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    target = reference_directory() / commit
    if all((target / name).is_file() for name in REFERENCE_FILES):
        return target
    for name in REFERENCE_FILES:
        text = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{commit}:{name}"], check=True,
                              capture_output=True).stdout
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(text)
    return target


def cached_reference() -> Path:
    """The most recently extracted reference folder."""
    folders = [f for f in reference_directory().glob("*")
               if all((f / name).is_file() for name in REFERENCE_FILES)] if reference_directory().is_dir() else []
    if not folders:
        raise SystemExit(f"no reference code under {reference_directory()}: pass --rome-git-dir, a bare git copy of "
                         "github.com/kmeng01/rome")
    return max(folders, key=lambda f: f.stat().st_mtime)


def import_reference(folder: Path) -> types.ModuleType:
    """``experiments/causal_trace.py`` from ``folder``, imported with :data:`STUBS` in place."""
    clashes = [name for name in ("util", "dsets", "rome", "experiments") if name in sys.modules]
    if clashes:
        raise SystemExit(f"modules {clashes} are already imported; the reference's top-level names would clash")

    def unused(name):
        def stand_in(*args, **kwargs):
            raise NotImplementedError(f"{name} is stubbed: causal tracing does not use it")
        return stand_in

    for module_name, names in STUBS.items():
        stub = types.ModuleType(module_name, "stand-in: imported by causal_trace.py, unused by its tracing")
        for name in names:
            setattr(stub, name, unused(f"{module_name}.{name}"))
        if module_name == "rome":
            stub.__path__ = []
        sys.modules[module_name] = stub
    sys.path.insert(0, str(folder))
    spec = importlib.util.spec_from_file_location("causal_trace", folder / "experiments" / "causal_trace.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def adapt_reference(causal_trace: types.ModuleType, device: torch.device) -> None:
    """The adaptations listed in the module docstring: ``layername`` for more families, the device."""
    original_layername, original_make_inputs = causal_trace.layername, causal_trace.make_inputs

    def layername(model, num, kind=None):
        if hasattr(model, "transformer") or hasattr(model, "gpt_neox"):
            return original_layername(model, num, kind)
        family = family_for_model_type(model.config.model_type)
        if kind == "embed":
            return family.embedding
        block = family.layer.format(num)
        return block if kind is None else f"{block}.{ {'mlp': 'mlp', 'attn': 'self_attn'}[kind]}"

    def make_inputs(tokenizer, prompts, device=device):
        return original_make_inputs(tokenizer, prompts, device=device)

    causal_trace.layername = layername
    causal_trace.make_inputs = make_inputs


def check_patching(causal_trace: types.ModuleType, mt, prompt: str, subject: str, noise: float) -> None:
    """Restoring the last token's block output at the last layer must give the clean probability back."""
    inp = causal_trace.make_inputs(mt.tokenizer, [prompt] * 2)
    with torch.no_grad():
        answer, clean = [d[0] for d in causal_trace.predict_from_input(mt.model, inp)]
    span = causal_trace.find_token_range(mt.tokenizer, inp["input_ids"][0], subject)
    last = inp["input_ids"].shape[1] - 1
    restored = causal_trace.trace_with_patch(
        mt.model, inp, [(last, causal_trace.layername(mt.model, mt.num_layers - 1))], answer, span, noise=noise).item()
    corrupted = causal_trace.trace_with_patch(mt.model, inp, [], answer, span, noise=noise).item()
    if abs(restored - clean.item()) > 1e-4 or abs(corrupted - clean.item()) < 1e-6:
        raise SystemExit(f"the reference's patching does not work on this model: clean p {clean.item():.6f}, "
                         f"corrupted {corrupted:.6f}, last state restored {restored:.6f}")


def load_reference(folder: Path, model_name: str):
    """The reference module, imported and adapted, and its ``ModelAndTokenizer`` holding the
    bundled model ``model_name`` loaded as a plain Hugging Face model (float32, eager attention,
    as :func:`workbench.load_model` loads it)."""
    causal_trace = import_reference(folder)
    directory = RECORDS[model_name].weights(cache_root())
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32, attn_implementation="eager",
                                                 local_files_only=True).eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
    mt = causal_trace.ModelAndTokenizer(model=model, tokenizer=tokenizer)
    if mt.num_layers == 0:  # its layer regex knows GPT-2/NeoX names only
        mt.num_layers = model.config.num_hidden_layers
    adapt_reference(causal_trace, model.device)
    return causal_trace, mt


def reference_trace(causal_trace, mt, prompt: str, subject: str, samples: int, noise: float, window: int,
                    token_range: str | None = None) -> list[dict]:
    """The reference's full trace of one prompt: ``calculate_hidden_flow`` for each of :data:`KINDS`."""
    return [causal_trace.calculate_hidden_flow(mt, prompt, subject, samples=samples, noise=noise, window=window,
                                               kind=kind, token_range=token_range)
            for kind in KINDS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", choices=sorted(PROMPTS))
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--rome-git-dir", help="a bare git copy of github.com/kmeng01/rome (else the cached extract)")
    parser.add_argument("--subject-last-only", action="store_true",
                        help="trace only the subject's last token (a quick check, not the benchmark)")
    parser.add_argument("--out", help="also write the report to this JSON file")
    args = parser.parse_args()
    folder = extract_reference(args.rome_git_dir) if args.rome_git_dir else cached_reference()
    prompts = PROMPTS[args.model][: args.prompts]
    bridge = workbench.load_model(args.model)  # for the noise scale, exactly as trace_speed.py computes it
    noises = [3.0 * embedding_std(bridge, [subject]) for _, subject in prompts]
    del bridge
    gc.collect()
    causal_trace, mt = load_reference(folder, args.model)
    for (prompt, subject), noise in zip(prompts, noises):
        check_patching(causal_trace, mt, prompt, subject, noise)  # also the warm-up
    token_range = "subject_last" if args.subject_last_only else None
    per_prompt, tokens = [], []
    for (prompt, subject), noise in zip(prompts, noises):
        started = time.perf_counter()
        results = reference_trace(causal_trace, mt, prompt, subject, args.samples, noise, args.window, token_range)
        per_prompt.append(time.perf_counter() - started)
        tokens.append(results[0]["input_tokens"])
    report = {
        "model": args.model,
        "prompts": prompts,
        "kinds": ["hidden" if kind is None else kind for kind in KINDS],
        "samples": args.samples,
        "window": args.window,
        "noise": noises,
        "subject_last_only": args.subject_last_only,
        "reference_seconds": sum(per_prompt),
        "per_prompt_seconds": per_prompt,
        "forward_passes": [len(KINDS) * ((1 if args.subject_last_only else len(t)) * mt.num_layers + 2)
                           for t in tokens],
        "reference_tokens": tokens,
        "reference_commit": folder.name,
        "layers": mt.num_layers,
        "device": str(mt.model.device),
        "threads": torch.get_num_threads(),
    }
    emit(report, args.out)


if __name__ == "__main__":
    main()
