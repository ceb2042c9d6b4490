"""Code agent: a Python programming assistant tuned on OpenCoder `opc-sft-stage2` (`educational_instruct`).

Rows carry `instruction`, `output` (the answer with prose and code), `code`, `entry_point` and `testcase`
(assert strings). A row is only useful if its tests can later score a generated program (pass@1), so
validation parses the code and every assert, and checks that the entry point is defined. How the agent
is benchmarked and scored is in `code_evaluation.py`.
"""

from __future__ import annotations

import ast
import hashlib
import warnings
from collections.abc import Iterator

from coursegpt_assets.agents import code_evaluation as evaluation
from coursegpt_assets.agents.base import render_vertex_prompt
from coursegpt_assets.core.chat_templates import build_messages
from coursegpt_assets.data.records import RawRow, normalise_text
from coursegpt_assets.data.sources import iter_source
from coursegpt_assets.data.subset import select_subset

SYSTEM_PROMPT = "You are an expert programming assistant."
TEXT_FIELDS = ("instruction", "output", "code", "entry_point")
ID_FIELDS = ("id", "seq_id")
MAX_INSTRUCTION_CHARS = 8_000
MAX_OUTPUT_CHARS = 24_000


def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():  # invalid escape sequences in data are not our concern here
        warnings.simplefilter("ignore", SyntaxWarning)
        return ast.parse(source)


def top_level_names(tree: ast.Module) -> set[str]:
    """Functions and classes the module defines at its top level (what a test can call)."""
    return {
        node.name for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }


def testcase_problems(testcase) -> list[str]:
    if not isinstance(testcase, list) or not testcase:
        return [f"testcase: expected a non-empty list of assert strings, got {type(testcase).__name__}"]
    problems: list[str] = []
    for i, test in enumerate(testcase):
        if not isinstance(test, str) or not test.strip():
            problems.append(f"testcase[{i}]: expected a non-empty string")
            continue
        try:
            tree = _parse(test)
        except SyntaxError as e:
            problems.append(f"testcase[{i}]: does not parse (line {e.lineno}: {e.msg})")
            continue
        if not tree.body or not all(isinstance(node, ast.Assert) for node in tree.body):
            problems.append(f"testcase[{i}]: not an assert statement: {test.strip()[:60]!r}")
    return problems


def validate(record: dict) -> list[str]:
    problems = [
        f"{name} is missing or empty" for name in TEXT_FIELDS
        if not isinstance(record.get(name), str) or not record[name].strip()
    ]
    if problems:
        return problems + testcase_problems(record.get("testcase"))
    for name, limit in (("instruction", MAX_INSTRUCTION_CHARS), ("output", MAX_OUTPUT_CHARS)):
        if len(record[name]) > limit:
            problems.append(f"{name} has {len(record[name]):,} characters (limit {limit:,})")
    try:
        tree = _parse(record["code"])
    except SyntaxError as e:
        problems.append(f"code does not parse as Python (line {e.lineno}: {e.msg})")
    else:
        entry_point = record["entry_point"].strip()
        if entry_point not in top_level_names(tree):
            problems.append(f"entry_point {entry_point!r} is not defined at the top level of the code")
    return problems + testcase_problems(record.get("testcase"))


def clean_record(record: dict) -> dict:
    return {
        "instruction": record["instruction"].strip(),
        "output": record["output"].strip(),
        "code": record["code"],
        "entry_point": record["entry_point"].strip(),
        "testcase": [t.strip() for t in record["testcase"]],
    }


class CodeAgent:
    name = "code"
    system_prompt = SYSTEM_PROMPT
    vertex_prompt_format = "{system}\n\nTask:\n{user}\n"
    source_variable = "COURSEGPT_CODE_SOURCE"
    preview_columns = ("instruction", "entry_point")
    columns = None  # not declared: schema.yml columns of code records are checked at run time
    benchmark_preview_columns = ("id", "entry_point", "instruction")
    counted_fields = ("source",)
    headline_metrics = evaluation.HEADLINE
    lower_is_better = frozenset()
    thresholds_path = None
    score_command = evaluation.SCORE_COMMAND
    intended_use = (
        "The code agent of CourseGPT-Pro: it writes Python solutions with explanations for programming "
        "exercises. Run generated code only in a sandbox and test it before use."
    )
    synthetic_data = False

    def load_raw(self, source: str, *, seed: int, subset_size: int | None,
                 read: dict | None = None) -> Iterator[RawRow]:
        if subset_size is None:
            yield from iter_source(source)
            return
        selection = select_subset(source, k=subset_size, seed=seed, key_fields=("instruction",),
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
        for name in ID_FIELDS:
            value = record.get(name)
            if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value).strip():
                return str(value)
        instruction = record.get("instruction")
        if not isinstance(instruction, str) or not instruction.strip():
            return f"code_line_{line}"
        return "code_" + hashlib.sha256(normalise_text(instruction).encode()).hexdigest()[:16]

    def dedup_key(self, record: dict) -> str:
        return normalise_text(record.get("instruction") or "")

    def user_text(self, record: dict) -> str:
        return record["instruction"].strip()

    def assistant_text(self, record: dict) -> str:
        return record["output"].strip()

    def vertex_prompt(self, record: dict) -> str:
        return render_vertex_prompt(self.vertex_prompt_format, SYSTEM_PROMPT, self.user_text(record))

    def benchmark_rows(self, split, *, seed: int, config) -> tuple[list[dict], list[dict]]:
        rows = evaluation.code_rows(split("test"))
        if not config.include_external:
            return rows, []
        external, files = evaluation.humaneval_rows()
        return rows + external, files

    def benchmark_question(self, row: dict) -> str:
        """The instruction; for HumanEval its prompt (what a training instruction would repeat if it leaked)."""
        return normalise_text(row.get("prompt") or row.get("instruction") or "")

    def benchmark_messages(self, row: dict) -> list[dict]:
        return build_messages(SYSTEM_PROMPT, row["instruction"].strip())

    def reference_answer(self, row: dict) -> str | None:
        return row.get("reference")  # the dataset's own solution code (answers add prose around it)

    def score(self, rows: list[dict], completions: list[str]):
        return evaluation.benchmark_score(rows, completions)


AGENT = CodeAgent()
