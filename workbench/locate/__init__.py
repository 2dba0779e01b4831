"""Where is a fact stored? Causal tracing, activation and attribution patching, attribution."""
