"""A workbench for factual knowledge in transformer language models."""
__version__ = "0.1.0"

from workbench import edit
from workbench.models import load_model, save_model

__all__ = ["__version__", "edit", "load_model", "save_model"]
