"""The main job: the end-to-end story of the workbench on the bundled fact model.

For now it loads the model (or, if the bundled weights are missing, a freshly built tiny GPT-2)
and shows what it predicts for a few prompts.
"""
from __future__ import annotations

import tempfile

from workbench.errors import ModelNotFoundError
from workbench.models import load_model
from workbench.predict import top_predictions
from workbench.zoo.tiny import build_tiny_model

PROMPTS = ("The capital of France is", "Oxygen has the chemical symbol")


def run_story(model_name: str = "factgpt") -> None:
    """Print the model's top predictions for a few prompts."""
    try:
        model = load_model(model_name)
        label = model_name
    except ModelNotFoundError as missing:
        if model_name != "factgpt":
            raise
        print(f"{missing}\nFalling back to a freshly built, untrained tiny GPT-2.")
        model = load_model(build_tiny_model("gpt2", tempfile.mkdtemp(prefix="workbench-tiny-")))
        label = "tiny random GPT-2"
    print(f"Model: {label} ({model.cfg.n_layers} layers, d_model {model.cfg.d_model})")
    for prompt in PROMPTS:
        best = top_predictions(model, prompt, k=3)
        shown = ", ".join(f"{p.token.strip()!r} {p.probability:.2f}" for p in best)
        print(f"  {prompt} -> {shown}")
