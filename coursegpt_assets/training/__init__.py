"""Local LoRA training: the tiny smoke base model, the Pipes training child, label helpers, adapter specs.

Nothing here imports torch/transformers at module level; the heavy imports live inside the functions.
"""
