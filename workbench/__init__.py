"""A workbench for factual knowledge in transformer language models."""
__version__ = "0.1.0"
