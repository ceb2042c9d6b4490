"""Math agent: a tutor that solves problems step by step, tuned on a seeded subset of MathX-5M.

Raw rows follow MathX-5M (`problem` or `question`, `generated_solution`, optional `expected_answer` /
`answer`). The subset is a seeded bottom-k sample (see `subset.py`); of a Parquet source it reads
seeded row groups, at most 10 % of the rows (`parquet_plan.py`). The same seed and source always give
the same rows. Clean records are `{id, problem, solution, answer}`.
How the agent is benchmarked and scored is in `math_evaluation.py`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from coursegpt_assets.agents import math_evaluation as evaluation
from coursegpt_assets.agents.base import render_vertex_prompt
from coursegpt_assets.core.chat_templates import build_messages
from coursegpt_assets.data.records import RawRow, normalise_text
from coursegpt_assets.data.sources import iter_source
from coursegpt_assets.data.subset import select_subset
from coursegpt_assets.scoring.math_answers import extract_answer

SYSTEM_PROMPT = (
    "You are an expert mathematics tutor. Solve problems step-by-step, showing your reasoning clearly."
)
PROBLEM_FIELDS = ("problem", "question")
SOLUTION_FIELDS = ("generated_solution", "solution")
ANSWER_FIELDS = ("expected_answer", "answer")
#: ~1k and ~6k tokens: longer rows would be truncated by the 8k-token Vertex limit with the prompt around them
MAX_PROBLEM_CHARS = 4_000
MAX_SOLUTION_CHARS = 24_000


def _first_text(record: dict, fields: tuple[str, ...]) -> str | None:
    for name in fields:
        value = record.get(name)
        if isinstance(value, str) and value.strip():
            return value
    return None


def _text_problems(record: dict, fields: tuple[str, ...], label: str, limit: int) -> list[str]:
    wrong = [f"{n}: expected a string, got {type(record[n]).__name__}"
             for n in fields if record.get(n) is not None and not isinstance(record[n], str)]
    value = _first_text(record, fields)
    if value is None:
        return wrong or [f"{label} is missing or empty (expected a non-empty {' or '.join(map(repr, fields))})"]
    if len(value) > limit:
        return [f"{label} has {len(value):,} characters (limit {limit:,})"]
    return []


def expected_answer(record: dict) -> str | None:
    """The source's own final answer, when it has one."""
    for name in ANSWER_FIELDS:
        value = record.get(name)
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, (int, float)) or (isinstance(value, str) and value.strip()):
            return str(value).strip()
    return None


def solution_answer(solution: str) -> str | None:
    """The final answer the solution states: \\boxed{...}, "final answer ...", or its last number."""
    return extract_answer(solution)


def validate(record: dict) -> list[str]:
    problems = _text_problems(record, PROBLEM_FIELDS, "problem", MAX_PROBLEM_CHARS)
    problems += _text_problems(record, SOLUTION_FIELDS, "solution", MAX_SOLUTION_CHARS)
    if problems:
        return problems
    if solution_answer(_first_text(record, SOLUTION_FIELDS)) is None:
        problems.append("solution states no final answer (no \\boxed{...}, 'final answer' or number)")
    return problems


def clean_record(record: dict) -> dict:
    """The canonical clean shape, whatever the source called its columns."""
    solution = _first_text(record, SOLUTION_FIELDS).strip()
    given = expected_answer(record)
    return {
        "problem": _first_text(record, PROBLEM_FIELDS).strip(),
        "solution": solution,
        "answer": given if given is not None else solution_answer(solution),
        "answer_source": "expected" if given is not None else "extracted",
    }


class MathAgent:
    name = "math"
    system_prompt = SYSTEM_PROMPT
    vertex_prompt_format = "{system}\n\nProblem:\n{user}\n"
    source_variable = "COURSEGPT_MATH_SOURCE"
    preview_columns = ("problem", "answer")
    columns = None  # not declared: schema.yml columns of math records are checked at run time
    benchmark_preview_columns = ("id", "file", "format", "question", "answer")
    counted_fields = ("source", "file", "format", "level")
    headline_metrics = evaluation.HEADLINE
    lower_is_better = frozenset()
    thresholds_path = None
    score_command = evaluation.SCORE_COMMAND
    intended_use = (
        "The math tutor of CourseGPT-Pro: it solves problems step by step and states a final answer. "
        "Check final answers independently before grading students with them."
    )
    synthetic_data = False

    def load_raw(self, source: str, *, seed: int, subset_size: int | None,
                 read: dict | None = None) -> Iterator[RawRow]:
        if subset_size is None:
            yield from iter_source(source)
            return
        selection = select_subset(source, k=subset_size, seed=seed, key_fields=PROBLEM_FIELDS,
                                  is_valid=self.is_valid_row)
        if read is not None:
            read.update(selection.read_summary())
        yield from selection.rows

    def is_valid_row(self, row: RawRow) -> bool:
        """Whether a raw row would pass clean_examples (the subset counts valid rows only)."""
        record = row.record
        return isinstance(record, dict) and not self.validate(record)

    def validate(self, record: dict) -> list[str]:
        return validate(record)

    def clean_record(self, record: dict) -> dict:
        return clean_record(record)

    def record_id(self, record: dict, line: int) -> str:
        source_id = record.get("id")
        if isinstance(source_id, (str, int)) and not isinstance(source_id, bool) and str(source_id).strip():
            return str(source_id)
        problem = _first_text(record, PROBLEM_FIELDS)
        if problem is None:
            return f"math_line_{line}"
        return "math_" + hashlib.sha256(normalise_text(problem).encode()).hexdigest()[:16]

    def dedup_key(self, record: dict) -> str:
        return normalise_text(_first_text(record, PROBLEM_FIELDS) or "")

    def user_text(self, record: dict) -> str:
        return _first_text(record, PROBLEM_FIELDS).strip()

    def assistant_text(self, record: dict) -> str:
        return _first_text(record, SOLUTION_FIELDS).strip()

    def vertex_prompt(self, record: dict) -> str:
        return render_vertex_prompt(self.vertex_prompt_format, SYSTEM_PROMPT, self.user_text(record))

    def benchmark_rows(self, split, *, seed: int, config) -> tuple[list[dict], list[dict]]:
        validation = split("validation") if config.include_validation else None
        files = config.math_files if config.math_files is not None else (None if config.include_external else [])
        return evaluation.math_rows(self, validation, files=files)

    def benchmark_question(self, row: dict) -> str:
        return normalise_text(row.get("question") or "")

    def benchmark_messages(self, row: dict) -> list[dict]:
        """The question; single-choice rows list their options as "A. ..." lines and ask for the letter."""
        question = row["question"].strip()
        options = row.get("options") or []
        if options:
            lines = "\n".join(f"{chr(ord('A') + i)}. {option}" for i, option in enumerate(options))
            question = f"{question}\n\n{lines}\n\nAnswer with the letter of the correct option."
        return build_messages(SYSTEM_PROMPT, question)

    def reference_answer(self, row: dict) -> str | None:
        return row.get("solution")  # worked solutions ("... #### answer" rows); other rows carry only the answer

    def score(self, rows: list[dict], completions: list[str]):
        return evaluation.benchmark_score(rows, completions)


AGENT = MathAgent()
