"""Small tokenizers standing in for each real family's: trained on the fixtures, with the family's special tokens
(Llama 3/4 and Gemma add BOS by themselves, as the real ones do) and the family's chat template."""

from __future__ import annotations

import itertools

from coursegpt_assets.core.chat_templates import family
from coursegpt_assets.training.tiny_llama import corpus_texts, fixture_files, train_tokenizer

#: special tokens of each family's real tokenizer: (bos, tokenizer eos, pad, others, adds BOS itself)
FAMILY_TOKENS = {
    "llama3": ("<|begin_of_text|>", "<|eot_id|>", "<|finetune_right_pad_id|>",
               ["<|start_header_id|>", "<|end_header_id|>"], True),
    "llama4": ("<|begin_of_text|>", "<|eot|>", "<|finetune_right_pad|>", ["<|header_start|>", "<|header_end|>"], True),
    "gemma": ("<bos>", "<eos>", "<pad>", ["<start_of_turn>", "<end_of_turn>"], True),
    "qwen": (None, "<|im_end|>", "<|endoftext|>", ["<|im_start|>", "<think>", "</think>"], False),
}


def family_tokenizer(name: str, extra_texts: list[str] = (), chat_template: str | None = None):
    """A fast tokenizer with family `name`'s special tokens and `chat_template` (default: the family's)."""
    bos, eos, pad, others, prepend = FAMILY_TOKENS[name]
    fam = family(name)
    corpus = list(itertools.islice(corpus_texts(fixture_files()), 400)) + list(extra_texts)
    return train_tokenizer(corpus, special_tokens=[fam.end_of_turn, *others], bos_token=bos, eos_token=eos,
                           pad_token=pad, chat_template=chat_template or fam.template, vocab_size=1024, prepend_bos=prepend)
