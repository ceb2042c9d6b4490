"""Hugging Face model cards: the builder (metadata, validation) and the Markdown template it renders."""
