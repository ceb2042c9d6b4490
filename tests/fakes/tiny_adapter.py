"""A LoRA adapter for a `*__tiny-llama` pair, trained for a few steps in-process and stored as `adapter` stores it.

The folder has what the training child writes (adapter weights + config named by the logical base id,
tokenizer files, the exact chat template, training_summary.json last) and `adapters/<pair>/latest.json`
points at it. `steps=0` stores PEFT's initial adapter (LoRA B = 0): a no-op the logit probe must catch.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from pathlib import Path

from coursegpt_assets.agents import get_agent
from coursegpt_assets.core import layout
from coursegpt_assets.core.chat_templates import build_messages, family, render
from coursegpt_assets.core.plan import default_plan
from coursegpt_assets.training.tiny_llama import base_model_revision, ensure_base_model
from resources.storage import ArtifactStore


def _texts(agent_name: str, count: int = 8) -> list[str]:
    """Short conversations in the tiny family's format, so the few steps see the real template."""
    agent = get_agent(agent_name)
    return [render("tiny", build_messages(agent.system_prompt, f"question {i}", f"answer {i}")) for i in range(count)]


def train_tiny_lora(base_path: str, out: Path, *, agent: str, steps: int, seed: int = 0,
                    rank: int | None = None) -> None:
    """`rank` (default: the plan's lora_rank) lets a test export an adapter the plan check must refuse."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hp = default_plan().hyperparameters
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(base_path)
    model = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=rank or hp.lora_rank, lora_alpha=hp.lora_alpha, lora_dropout=0.0,
                                             target_modules=list(hp.target_modules), task_type="CAUSAL_LM"))
    if steps:
        batch = tokenizer(text=_texts(agent), return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
        model.train()
        for _ in range(steps):
            loss = model(**batch, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))


def write_tiny_adapter(store: ArtifactStore, pair: str, *, models_home: Path, steps: int = 3, seed: int = 0) -> str:
    """Train (or, with steps=0, only initialise) an adapter for `pair` and store it; returns its version."""
    plan = default_plan()
    agent, base_model = pair.split("__", 1)
    spec = plan.base_models[base_model]
    base_path = ensure_base_model(base_model, plan, home=models_home)
    version = hashlib.sha256(f"{pair}-{steps}-{seed}".encode()).hexdigest()[:16]
    fam = family(spec.family)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        train_tiny_lora(base_path, out, agent=agent, steps=steps, seed=seed)
        config = json.loads((out / "adapter_config.json").read_text())
        config["base_model_name_or_path"] = spec.hf_id
        (out / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        (out / "README.md").unlink(missing_ok=True)
        (out / "chat_template.jinja").write_text(fam.template, encoding="utf-8")
        summary = {"pair": pair, "agent": agent, "base_model": base_model, "base_model_id": spec.hf_id,
                   "base_model_revision": base_model_revision(base_model, plan), "version": version,
                   "backend": "trl", "device": "cpu", "smoke": spec.smoke, "steps": steps,
                   "hyperparameters": {"lora_rank": plan.hyperparameters.lora_rank, "eos_token": fam.end_of_turn}}
        (out / "training_summary.json").write_text(json.dumps(summary, indent=2, sort_keys=True))
        store.upload_dir(out, layout.adapter_dir(pair, version), last="training_summary.json")
    store.write_json(layout.adapter_latest(pair), {"version": version})
    return version
