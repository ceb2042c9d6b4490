"""Local generation speed: `LocalGenerator`'s generation path vs plain transformers baselines, same prompts.

On the tiny smoke model (`tiny-llama`, built in a temporary home) with a LoRA adapter of the plan's shape
(random, non-zero B, so the adapter changes the answers), greedy decoding of the first --prompts router
benchmark conversations rendered with the tiny chat template, up to --max-new-tokens each:

- ours: `resources.local_generation.generate` as `LocalGenerator` runs it for the adapter's answers
  (`load`, `merge_adapter`, then `generate` with its default thread setting);
- generate: `model.generate()` on the PEFT model as loaded, all prompts in one left-padded batch;
- generate-merged: the same on a copy with the LoRA merged into the weights (`merge_and_unload`);
- kv-loop: a plain greedy loop over the KV cache on the merged copy (one forward per step, argmax).

On CPU each baseline runs at torch's thread count and at the one ours picks, so the thread setting alone
cannot make the ratio. The methods run interleaved in one process, --repeats times in rotating order (one
untimed warm-up round first); the medians are printed with tokens/s (answer tokens up to and including the
stop token) and the ratio of ours to the fastest baseline (target >= 1.0). Each baseline's answers are
compared with ours. "ours, base" (the base model's answers, PEFT `disable_adapter()` on an unmerged load) is
printed for reference, outside the ratio.

    .venv/bin/python bench/generation.py [--prompts 8] [--max-new-tokens 64] [--repeats 5] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.router import valid_fixture_records
from coursegpt_assets.agents.router_evaluation import router_rows
from coursegpt_assets.core.chat_templates import family, render
from coursegpt_assets.core.layout import CHAT_TEMPLATE_FILE
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.training.tiny_llama import ensure_base_model
from resources import local_generation as lg

TARGET = 1.0


def router_prompts(count: int) -> list[str]:
    """The first `count` valid router fixture records as benchmark prompts in the tiny chat template."""
    agent = get_agent("router")
    rows = router_rows(agent, valid_fixture_records()[:count], [], seed=0)
    if len(rows) < count:
        raise SystemExit(f"the router fixture has only {len(rows)} valid records; ask for --prompts {len(rows)}")
    return [render("tiny", agent.benchmark_messages(r), add_generation_prompt=True) for r in rows]


def write_adapter(base_path: str, out: Path, seed: int) -> None:
    """A LoRA adapter of the plan's shape with random A and B (PEFT `init_lora_weights=False`)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hp = default_plan().hyperparameters
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=hp.lora_rank, lora_alpha=hp.lora_alpha, lora_dropout=0.0,
                                             target_modules=list(hp.target_modules), task_type="CAUSAL_LM",
                                             init_lora_weights=False))
    model.save_pretrained(str(out))
    AutoTokenizer.from_pretrained(base_path).save_pretrained(str(out))
    (out / CHAT_TEMPLATE_FILE).write_text(family("tiny").template, encoding="utf-8")


def kept(rows: list[list[int]], stop_ids: list[int]) -> tuple[list[list[int]], int]:
    """Each row up to its first stop token, and the answer tokens counted as `lg.generate` counts them."""
    out, count = [], 0
    for ids in rows:
        stop_at = next((j for j, t in enumerate(ids) if t in stop_ids), None)
        out.append(ids if stop_at is None else ids[:stop_at])
        count += len(ids) if stop_at is None else stop_at + 1
    return out, count


def plain_generate(model, loaded: lg.LoadedModel, prompts: list[str], max_new_tokens: int):
    from transformers import GenerationConfig

    config = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                              eos_token_id=loaded.stop_ids, pad_token_id=loaded.tokenizer.pad_token_id)
    batch = lg.encode(loaded.tokenizer, prompts, loaded.device)
    with torch.no_grad():
        out = model.generate(**batch, generation_config=config)
    return kept(out[:, batch["input_ids"].shape[1]:].tolist(), loaded.stop_ids)


def kv_loop(model, loaded: lg.LoadedModel, prompts: list[str], max_new_tokens: int):
    """One left-padded batch; each step feeds the argmax back with the cache; stops when every row stopped."""
    batch = lg.encode(loaded.tokenizer, prompts, loaded.device)
    mask = batch["attention_mask"]
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    stops = torch.tensor(loaded.stop_ids, device=loaded.device)
    steps, done, past, ids = [], None, None, batch["input_ids"]
    with torch.no_grad():
        for _ in range(max_new_tokens):
            out = model(input_ids=ids, attention_mask=mask, position_ids=positions, cache=past, use_cache=True)
            past, token = out.cache, out.logits[:, -1].argmax(-1)
            steps.append(token)
            done = torch.isin(token, stops) if done is None else done | torch.isin(token, stops)
            if bool(done.all()):
                break
            ids, positions = token[:, None], positions[:, -1:] + 1
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
    return kept(torch.stack(steps, dim=1).tolist(), loaded.stop_ids)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=8, help="LocalGenerator.batch_size for ours")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    prompts = router_prompts(args.prompts)
    with tempfile.TemporaryDirectory(prefix="coursegpt-generation-") as home:
        base_path = ensure_base_model("tiny-llama", default_plan(), home=Path(home))
        adapter_dir = Path(home) / "adapter"
        write_adapter(base_path, adapter_dir, args.seed)
        eot = family("tiny").end_of_turn
        loaded = lg.load(base_path, adapter_dir, device=args.device, dtype="float32", end_of_turn=eot)
        peft_model = loaded.model
        merged = copy.deepcopy(peft_model).merge_and_unload()
        ours_loaded = lg.load(base_path, adapter_dir, device=args.device, dtype="float32", end_of_turn=eot)
        prepared_at = time.perf_counter()
        lg.merge_adapter(ours_loaded)  # what LocalGenerator does before the adapter's answers
        prepare_s = time.perf_counter() - prepared_at
        tok = loaded.tokenizer
        prompt_tokens = int(lg.encode(tok, prompts, args.device)["attention_mask"].sum())
        with lg.cpu_threads(ours_loaded):
            ours_threads = torch.get_num_threads()

        def ours():
            texts, _, count = lg.generate(ours_loaded, prompts, max_new_tokens=args.max_new_tokens,
                                          batch_size=args.batch_size)
            return texts, count

        def ours_base():
            with peft_model.disable_adapter():
                texts, _, count = lg.generate(loaded, prompts, max_new_tokens=args.max_new_tokens,
                                              batch_size=args.batch_size)
            return texts, count

        def baseline(fn, model, threads):
            def run():
                before = torch.get_num_threads()
                torch.set_num_threads(threads)
                try:
                    rows, count = fn(model, loaded, prompts, args.max_new_tokens)
                finally:
                    torch.set_num_threads(before)
                return [tok.decode(r, skip_special_tokens=True) for r in rows], count
            return run

        methods = {"ours": ours, "ours, base": ours_base}
        for threads in sorted({torch.get_num_threads(), ours_threads}, reverse=True):
            methods[f"generate {threads}t"] = baseline(plain_generate, peft_model, threads)
            methods[f"generate-merged {threads}t"] = baseline(plain_generate, merged, threads)
            methods[f"kv-loop {threads}t"] = baseline(kv_loop, merged, threads)
        names = list(methods)
        times: dict[str, list[float]] = {n: [] for n in names}
        answers: dict[str, tuple[list[str], int]] = {}
        for rep in range(args.repeats + 1):  # the first round warms up and is not timed
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                started = time.perf_counter()
                answers[name] = methods[name]()
                if rep:
                    times[name].append(time.perf_counter() - started)
    print(f"{args.device}: {args.prompts} prompts ({prompt_tokens} prompt tokens), up to {args.max_new_tokens} new tokens each, "
          f"medians of {args.repeats}; ours: {ours_threads} thread(s), LoRA merged in {prepare_s:.3f} s (once per load)")
    rates = {}
    for name in names:
        seconds = statistics.median(times[name])
        tokens = answers[name][1]
        rates[name] = tokens / seconds
        same = ("" if name == "ours, base" else "same answers as ours" if answers[name][0] == answers["ours"][0]
                else "ANSWERS DIFFER FROM OURS")
        print(f"  {name:20s} {tokens:5d} tokens  {seconds:7.3f} s  {rates[name]:8.1f} tokens/s  {same}")
    fastest = max((n for n in names if not n.startswith("ours")), key=rates.get)
    ratio = rates["ours"] / rates[fastest]
    print(f"ours / fastest baseline ({fastest}): {ratio:.2f}x (target >= {TARGET:.1f}x: "
          f"{'met' if ratio >= TARGET else 'missed'})")


if __name__ == "__main__":
    main()
