"""Local generation is fast and still greedy `model.generate()`, token for token.

The tiny base model is fine-tuned for a few steps to answer with lists of different lengths and stop at
`<|end|>`, and a small random LoRA goes on top, so adapter and base answers differ and both stop at the
end-of-turn token on some rows and run into max_new_tokens on others.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from coursegpt_assets.core.chat_templates import build_messages, family, render
from coursegpt_assets.core.layout import CHAT_TEMPLATE_FILE
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.training.tiny_llama import ensure_base_model
from resources import local_generation as lg
from resources.inference import GenerationRequest, LocalGenerator

EOT = family("tiny").end_of_turn
MAX_NEW = 8
SYSTEM = "You route questions to the right tool and answer briefly."
WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]


def conversation(i: int, answer: str | None = None) -> list[dict]:
    return build_messages(SYSTEM, f"question {WORDS[i]} " * (1 + i % 3), answer)


PROMPTS = [render("tiny", conversation(i), add_generation_prompt=True) for i in range(len(WORDS))]


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> tuple[str, Path]:
    """(base model folder, adapter folder)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("generation")
    tiny = ensure_base_model("tiny-llama", default_plan(), home=root / "models")
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    texts = [render("tiny", conversation(i, " ".join(WORDS[: i + 1]))) for i in range(len(WORDS))]
    batch = tokenizer(text=texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    base_dir, adapter_dir = root / "base", root / "adapter"
    model.eval().save_pretrained(base_dir)
    tokenizer.save_pretrained(base_dir)
    torch.manual_seed(1)
    lora = LoraConfig(r=8, lora_alpha=2, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False,
                      task_type="CAUSAL_LM")
    get_peft_model(model, lora).save_pretrained(adapter_dir)
    (adapter_dir / CHAT_TEMPLATE_FILE).write_text(family("tiny").template, encoding="utf-8")
    return str(base_dir), adapter_dir


def reference(model, loaded: lg.LoadedModel) -> tuple[list[str], list[str], int]:
    """Greedy `model.generate()` on all prompts in one left-padded batch, cut as LocalGenerator cuts."""
    import torch
    from transformers import GenerationConfig

    tok = loaded.tokenizer
    batch = lg.encode(tok, PROMPTS, "cpu")
    config = GenerationConfig(max_new_tokens=MAX_NEW, do_sample=False, num_beams=1, eos_token_id=loaded.stop_ids,
                              pad_token_id=tok.pad_token_id)
    with torch.no_grad():
        rows = model.generate(**batch, generation_config=config)[:, batch["input_ids"].shape[1]:].tolist()
    texts, reasons, count = [], [], 0
    for ids in rows:
        stop = next((j for j, t in enumerate(ids) if t in loaded.stop_ids), None)
        texts.append(tok.decode(ids if stop is None else ids[:stop], skip_special_tokens=True))
        reasons.append("length" if stop is None else "stop")
        count += len(ids) if stop is None else stop + 1
    return texts, reasons, count


def load(model_dirs) -> lg.LoadedModel:
    return lg.load(model_dirs[0], model_dirs[1], device="cpu", dtype="float32", end_of_turn=EOT)


@pytest.fixture(scope="module")
def expected(model_dirs) -> dict[str, tuple[list[str], list[str], int]]:
    """generate()'s answers: the PEFT model as loaded (adapter) and the plain base model (base)."""
    import torch
    from transformers import AutoModelForCausalLM

    loaded = load(model_dirs)
    plain = AutoModelForCausalLM.from_pretrained(model_dirs[0], dtype=torch.float32).eval()
    answers = {"adapter": reference(loaded.model, loaded), "base": reference(plain, loaded)}
    for _, reasons, _ in answers.values():  # the fixture exercises both ways an answer ends
        assert {"stop", "length"} <= set(reasons), reasons
    assert answers["adapter"][0] != answers["base"][0]
    return answers


@pytest.mark.parametrize("batch_size", [3, len(PROMPTS)])
def test_answers_are_greedy_generates_token_for_token(model_dirs, expected, batch_size):
    loaded = load(model_dirs)
    with loaded.model.disable_adapter():
        base = lg.generate(loaded, PROMPTS, max_new_tokens=MAX_NEW, batch_size=batch_size)
    unmerged = lg.generate(loaded, PROMPTS, max_new_tokens=MAX_NEW, batch_size=batch_size)
    lg.merge_adapter(loaded)
    merged = lg.generate(loaded, PROMPTS, max_new_tokens=MAX_NEW, batch_size=batch_size)
    assert base == expected["base"]
    assert unmerged == expected["adapter"] and merged == expected["adapter"]


def test_local_generator_answers_base_then_merged_adapter_as_generate_does(model_dirs, expected, monkeypatch):
    base_dir, adapter_dir = model_dirs
    monkeypatch.setattr(LocalGenerator, "_base_path", lambda self, request: base_dir)
    merges = []
    real_merge = lg.merge_adapter
    monkeypatch.setattr(lg, "merge_adapter", lambda loaded, *threads: merges.append(1) or real_merge(loaded, *threads))
    request = GenerationRequest(
        pair="router__tiny-llama", base_model="tiny-llama", base_model_id="local/tiny-llama", vertex_model_id=None,
        adapter_dir=adapter_dir, adapter_version="v1", conversations=[conversation(i) for i in range(len(WORDS))],
        max_new_tokens=MAX_NEW, end_of_turn=EOT)
    for merge in (True, False):
        adapter, base = LocalGenerator(device="cpu", merge_lora=merge).generate_with_base(request)
        assert (adapter.completions, adapter.finish_reasons, adapter.generated_tokens) == expected["adapter"]
        assert (base.completions, base.finish_reasons, base.generated_tokens) == expected["base"]
        assert adapter.settings["merge_lora"] is merge and "merge_lora" not in base.settings
    assert len(merges) == 1  # merged once, after the base model answered


def test_the_shared_prefix_runs_once_and_finished_rows_leave_the_batch(model_dirs, expected):
    loaded = load(model_dirs)
    lg.merge_adapter(loaded)
    shapes = []
    hook = loaded.model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True)
    try:
        lg.generate(loaded, PROMPTS, max_new_tokens=MAX_NEW, batch_size=len(PROMPTS))
    finally:
        hook.remove()
    rows = lg.token_rows(loaded.tokenizer, PROMPTS)
    shared = lg.shared_prefix(rows)
    assert shared > 0 and shapes[0] == (1, shared)
    assert shapes[1] == (len(PROMPTS), max(len(r) for r in rows) - shared)
    sizes = [s[0] for s in shapes[1:]]
    assert "stop" in expected["adapter"][1] and sizes[-1] < len(PROMPTS) and sizes == sorted(sizes, reverse=True)


def test_shared_prefix_leaves_every_row_a_token():
    assert lg.shared_prefix([[1, 2, 3, 4], [1, 2, 5]]) == 2
    assert lg.shared_prefix([[1, 2, 3], [1, 2, 3]]) == 2
    assert lg.shared_prefix([[1, 2, 3], [1, 2]]) == 1
    assert lg.shared_prefix([[7, 2], [1, 2]]) == 0
    assert lg.shared_prefix([[1, 2, 3]]) == 0  # one row: nothing to share


def test_a_small_model_decodes_and_probes_on_one_thread_and_the_setting_comes_back(model_dirs):
    import torch

    loaded = load(model_dirs)
    seen = []
    loaded.model.register_forward_pre_hook(lambda module, args: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lg.generate(loaded, PROMPTS[:2], max_new_tokens=2, batch_size=2)
        lg.logit_probe(loaded, PROMPTS[:2], tolerance=0.0, max_tokens=64)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        lg.generate(loaded, PROMPTS[:2], max_new_tokens=2, batch_size=2, threads=2)
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(before)


def test_merging_runs_on_one_thread_and_releasing_a_small_cpu_model_skips_the_full_collection(model_dirs,
                                                                                              monkeypatch):
    import gc

    import torch
    from peft.tuners.lora.layer import Linear

    loaded = load(model_dirs)
    seen, collections = [], []
    real_delta = Linear.get_delta_weight
    monkeypatch.setattr(Linear, "get_delta_weight",
                        lambda self, adapter: seen.append(torch.get_num_threads()) or real_delta(self, adapter))
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        lg.merge_adapter(loaded)
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {1}
    lg.release(loaded)
    assert loaded.model is None and collections == []
