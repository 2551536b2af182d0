"""Model loading, the global model cache and the generation engine (transformers lives here)."""
