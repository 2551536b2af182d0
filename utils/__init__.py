"""Pure helpers (torch, PIL, numpy, stdlib only): no transformers, no ComfyUI."""
