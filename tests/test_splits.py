import random

import pytest

from coursegpt_assets.data.splits import assign_splits, target_counts


def test_seed_counts_are_reproduced():
    assert target_counts(8189, 0.10, 0.05) == {"train": 6962, "validation": 818, "test": 409}
    assert target_counts(10_000, 0.10, 0.0) == {"train": 9000, "validation": 1000, "test": 0}


def test_assignment_hits_the_counts_and_is_deterministic():
    keys = [f"query {i}" for i in range(8189)]
    first = assign_splits(keys, validation=0.10, test=0.05, seed=42)
    assert {s: first.count(s) for s in ("train", "validation", "test")} == {
        "train": 6962, "validation": 818, "test": 409
    }
    assert assign_splits(keys, validation=0.10, test=0.05, seed=42) == first
    assert assign_splits(keys, validation=0.10, test=0.05, seed=7) != first


def test_assignment_does_not_depend_on_source_order():
    keys = [f"q{i}" for i in range(500)]
    shuffled = keys[:]
    random.Random(1).shuffle(shuffled)
    a = dict(zip(keys, assign_splits(keys, validation=0.1, test=0.05, seed=3), strict=True))
    b = dict(zip(shuffled, assign_splits(shuffled, validation=0.1, test=0.05, seed=3), strict=True))
    assert a == b


def test_duplicate_prompts_never_straddle_splits():
    keys = [f"q{i % 137}" for i in range(1000)]  # every prompt repeated ~7 times
    splits = assign_splits(keys, validation=0.1, test=0.05, seed=42)
    by_key: dict[str, set[str]] = {}
    for key, split in zip(keys, splits, strict=True):
        by_key.setdefault(key, set()).add(split)
    assert all(len(s) == 1 for s in by_key.values())
    assert splits.count("test") <= 50 and splits.count("validation") <= 100


def test_ratios_that_leave_no_training_data_are_rejected():
    with pytest.raises(ValueError, match="leave no training data"):
        target_counts(10, 0.6, 0.5)


def test_normalised_prompt_collapses_every_unicode_whitespace_like_the_regex():
    import re

    from coursegpt_assets.data.records import normalise_text

    spaces = "".join(c for c in map(chr, range(0x3000 + 1)) if re.fullmatch(r"\s", c))
    assert len(spaces) > 20  # ASCII, \x1c-\x1f, NBSP, the U+2000 block, ideographic space...
    text = f"{spaces}What IS{spaces}2+2?\u2003\u2003Explain {spaces}"
    assert normalise_text(text) == re.sub(r"\s+", " ", text).strip().lower() == "what is 2+2? explain"
    assert normalise_text(42) == "42"
