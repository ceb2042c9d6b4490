"""A fourth agent outside the project: the toy agent module, its fixture and a plan naming both, in a folder.

`write_toy_project(root)` copies `tests/fakes/toy_agent.py` to `root/toy_agent.py`, writes 64 toy records
to `root/toy.jsonl` and a copy of training_plan.yaml with agent `toy` (module `toy_agent`) and the pair
`toy__tiny-llama`. `env` is what a process needs to see it: the folder on PYTHONPATH, the plan and the
toy agent's own source variable.
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.conftest import PROJECT_ROOT

TOY_AGENT_FILE = Path(__file__).with_name("toy_agent.py")
TOY_PAIR = "toy__tiny-llama"
SYLLABLES = ("ka", "lo", "mi", "nu", "pe", "ri", "so", "tu")


@dataclass(frozen=True)
class ToyProject:
    root: Path
    plan: Path
    fixture: Path

    @property
    def env(self) -> dict[str, str]:
        path = os.pathsep.join(p for p in (str(self.root), os.environ.get("PYTHONPATH", "")) if p)
        return {"PYTHONPATH": path, "COURSEGPT_PLAN": str(self.plan), "COURSEGPT_TOY_SOURCE": str(self.fixture)}


def toy_records() -> list[dict]:
    """64 distinct made-up words (two syllables each) with their reversal."""
    words = ["".join(pair) for pair in itertools.product(SYLLABLES, repeat=2)]
    return [{"id": f"toy-{i:03d}", "word": word, "reversed": word[::-1]} for i, word in enumerate(words)]


def toy_plan() -> dict:
    plan = yaml.safe_load((PROJECT_ROOT / "training_plan.yaml").read_text())
    plan["agents"]["toy"] = {
        "description": "Writes the given word backwards (a toy task).",
        "source": "toy.jsonl", "source_license": "mit", "module": "toy_agent",
        "splits": {"validation": 0.1, "test": 0.2},
    }
    plan["pairs"]["toy"] = ["tiny-llama"]
    return plan


def write_toy_project(root: Path) -> ToyProject:
    (root / "toy_agent.py").write_text(TOY_AGENT_FILE.read_text())
    fixture = root / "toy.jsonl"
    fixture.write_text("".join(json.dumps(r) + "\n" for r in toy_records()))
    plan = root / "training_plan.yaml"
    plan.write_text(yaml.safe_dump(toy_plan(), sort_keys=False))
    return ToyProject(root=root, plan=plan, fixture=fixture)
