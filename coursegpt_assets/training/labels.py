"""What the trainer sees for one example: the strings handed to TRL and the labels TRL builds from them.

The training child and the label tests share these functions, so the test that asserts "the end-of-turn
token is a trained label" checks exactly what training does. `completion_labels` reproduces TRL 1.16's
prompt-completion preparation (append EOS when missing, tokenize prompt and prompt + completion, mask
the common prefix, truncate); a test compares it with SFTTrainer's own prepared dataset.
"""

from __future__ import annotations

IGNORE_INDEX = -100


def auto_bos(tokenizer) -> bool:
    """Whether the tokenizer inserts BOS by itself (Llama 3's does), so a rendered BOS would double it."""
    bos_id = tokenizer.bos_token_id
    if bos_id is None:
        return False
    ids = tokenizer(text="a")["input_ids"]
    return bool(ids) and ids[0] == bos_id


def through_end_of_turn(text_completion: str, end_of_turn: str) -> str:
    """The rendered completion up to and including its last end-of-turn token (the template's trailing
    newline is no label); ValueError when it holds none."""
    cut = text_completion.rfind(end_of_turn)
    if cut < 0:
        raise ValueError(
            f"completion does not contain the end-of-turn token {end_of_turn!r}: {text_completion[-80:]!r}"
        )
    return text_completion[: cut + len(end_of_turn)]


def prepare_pair(tokenizer, text_prompt: str, text_completion: str, end_of_turn: str) -> tuple[str, str]:
    """The (prompt, completion) strings to train on, from a tuning row's rendered text.

    - The completion must hold the family's end-of-turn token; anything after its last occurrence (the
      template's trailing newline) is dropped, so the completion ends on the token the model must learn.
    - A BOS written by the template is removed when the tokenizer adds one itself.
    """
    completion = through_end_of_turn(text_completion, end_of_turn)
    prompt = text_prompt
    bos = tokenizer.bos_token
    if bos and prompt.startswith(bos) and auto_bos(tokenizer):
        prompt = prompt[len(bos):]
    return prompt, completion


def completion_labels(
    tokenizer,
    prompt: str,
    completion: str,
    *,
    eos_token: str | None = None,
    max_length: int | None = None,
    truncation_mode: str = "keep_start",
) -> dict:
    """`input_ids` and `labels` (prompt positions = -100) exactly as TRL's SFTTrainer prepares them.

    `eos_token` mirrors `SFTConfig.eos_token` (default: the tokenizer's). Also returns `prompt_length`
    (leading tokens masked) and `full_length` (tokens before truncation).
    """
    from trl.data_utils import common_prefix_length

    eos = eos_token or tokenizer.eos_token
    if eos and not completion.endswith(eos):
        completion = completion + eos
    prompt_ids = tokenizer(text=prompt)["input_ids"]
    full_ids = tokenizer(text=prompt + completion)["input_ids"]
    prompt_len = common_prefix_length(prompt_ids, full_ids)
    labels = [IGNORE_INDEX] * prompt_len + full_ids[prompt_len:]
    full_length = len(full_ids)
    if max_length is not None and len(full_ids) > max_length:
        if truncation_mode == "keep_end":
            full_ids, labels = full_ids[-max_length:], labels[-max_length:]
        elif truncation_mode == "keep_start":
            full_ids, labels = full_ids[:max_length], labels[:max_length]
        else:
            raise ValueError(f"truncation_mode {truncation_mode!r}: expected 'keep_start' or 'keep_end'")
    return {"input_ids": full_ids, "labels": labels, "prompt_length": prompt_len, "full_length": full_length}


def terminator_is_trained(tokenizer, labels: list[int], end_of_turn: str) -> bool:
    """True when the end-of-turn token appears among the unmasked labels."""
    eot_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    return eot_id is not None and eot_id in [x for x in labels if x != IGNORE_INDEX]
