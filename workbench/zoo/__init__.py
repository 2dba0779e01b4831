"""The bundled fact model: its knowledge base of true facts, tokenizer and weights."""
