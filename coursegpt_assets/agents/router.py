"""Router agent: strict-JSON route plans over the /math, /code and /general-search specialists.

Records follow the schema of `Alovestocode/Router-agent-data`; the tuning completion is the JSON of the
ten keys below, the prompt is the seed's planner instruction followed by the user query. How the agent is
benchmarked and scored is in `router_evaluation.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from coursegpt_assets.agents import router_evaluation as evaluation
from coursegpt_assets.agents.base import render_vertex_prompt
from coursegpt_assets.core.chat_templates import build_messages
from coursegpt_assets.data.records import RawRow, normalise_text
from coursegpt_assets.data.sources import iter_source
from coursegpt_assets.scoring.router_thresholds import DEFAULT_THRESHOLDS_PATH

COMPLETION_KEYS = (
    "route_plan", "route_rationale", "expected_artifacts", "thinking_outline", "handoff_plan",
    "todo_list", "difficulty", "tags", "acceptance_criteria", "metrics",
)
TOOLS = ("/math", "/code", "/general-search")
DIFFICULTIES = ("introductory", "intermediate", "advanced")

SYSTEM_PROMPT = (
    "You are the Router Agent coordinating Math, Code, and General-Search specialists.\n"
    "Given the user query, respond with a JSON object describing the full routing plan.\n\n"
    "Requirements:\n"
    "- STRICT JSON with double quotes and no extra commentary.\n"
    "- Keys: route_plan, route_rationale, expected_artifacts, thinking_outline,\n"
    "  handoff_plan, todo_list, difficulty, tags, acceptance_criteria, metrics.\n"
    "- route_plan must be an ordered list of tool invocations.\n"
    "- Use the original phrasing when possible."
)

_LIST_OF_STR = "list of strings"
REQUIRED_TYPES: dict[str, tuple[type, str]] = {
    "id": (str, "string"),
    "user_query": (str, "string"),
    "route_plan": (list, _LIST_OF_STR),
    "route_rationale": (str, "string"),
    "expected_artifacts": (list, _LIST_OF_STR),
    "thinking_outline": (list, _LIST_OF_STR),
    "handoff_plan": (str, "string"),
    "todo_list": (list, _LIST_OF_STR),
    "difficulty": (str, "string"),
    "tags": (list, _LIST_OF_STR),
    "acceptance_criteria": (list, _LIST_OF_STR),
    "metrics": (dict, "object"),
}
OPTIONAL_TYPES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "task_summary": (str, "string"),
    "quality_score": ((int, float), "number"),
    "compute_budget": (dict, "object"),
    "repro": (dict, "object"),
    "requires_browse": (bool, "boolean"),
    "citation_policy": (str, "string"),
    "io_schema": (dict, "object"),
}


def tool_name(step: str) -> str:
    """The tool of one plan step: its text before the first '(' (the seed's definition)."""
    return str(step).split("(", 1)[0].strip()


def _type_problem(key: str, value, expected, label: str) -> str | None:
    if isinstance(value, bool) and label == "number":
        return f"{key}: expected {label}, got boolean"
    if not isinstance(value, expected):
        return f"{key}: expected {label}, got {type(value).__name__}"
    if label == _LIST_OF_STR:
        for item in value:
            if not isinstance(item, str):
                return f"{key}: expected {label}, found a non-string item"
    return None


_STR_ONLY = frozenset({str})


def _types_ok(record: dict) -> bool:
    """The common case in one pass: every required key present with its type, lists of strings all strings,
    optional keys absent or typed. Any doubt falls through to the detailed check that names the problem."""
    get = record.get
    for key, (expected, label) in REQUIRED_TYPES.items():
        value = get(key)
        if value is None or not isinstance(value, expected):
            return False
        if label is _LIST_OF_STR and value and not {*map(type, value)} <= _STR_ONLY:
            return False
    for key, (expected, label) in OPTIONAL_TYPES.items():
        value = get(key)
        if value is not None and (not isinstance(value, expected) or (label == "number" and isinstance(value, bool))):
            return False
    return True


def validate(record: dict) -> list[str]:
    problems: list[str] = []
    if not _types_ok(record):
        for key, (expected, label) in REQUIRED_TYPES.items():
            value = record.get(key)
            if value is None:
                problems.append(f"missing required key {key!r}")
            elif (problem := _type_problem(key, value, expected, label)) is not None:
                problems.append(problem)
        for key, (expected, label) in OPTIONAL_TYPES.items():
            value = record.get(key)
            if value is not None and (problem := _type_problem(key, value, expected, label)) is not None:
                problems.append(problem)
    if problems:
        return problems
    if not record["user_query"].strip():
        problems.append("user_query is empty")
    if not record["id"].strip():
        problems.append("id is empty")
    if not record["route_plan"]:
        problems.append("route_plan is empty")
    for i, step in enumerate(record["route_plan"]):
        if tool_name(step) not in TOOLS:
            problems.append(f"route_plan[{i}]: unknown tool {tool_name(step)!r} (allowed: {', '.join(TOOLS)})")
    if record["difficulty"] not in DIFFICULTIES:
        problems.append(f"difficulty {record['difficulty']!r} is not one of {', '.join(DIFFICULTIES)}")
    metrics = record["metrics"]
    for key in ("primary", "secondary"):
        if not isinstance(metrics.get(key), list):
            problems.append(f"metrics.{key}: expected a list")
    quality = record.get("quality_score")
    if quality is not None and not 0 <= quality <= 100:
        problems.append(f"quality_score {quality} is outside 0-100")
    return problems


def valid_fixture_records() -> list[dict]:
    """The shipped router fixture's records that pass validation, in file order (its malformed rows, there
    on purpose for the quarantine, are skipped): sample records for tests and benches."""
    from coursegpt_assets.core.settings import FIXTURES_DIR

    records = []
    for line in (FIXTURES_DIR / "router.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and not validate(record):
            records.append(record)
    return records


def completion_object(record: dict) -> dict:
    return {key: record[key] for key in COMPLETION_KEYS}


class RouterAgent:
    name = "router"
    system_prompt = SYSTEM_PROMPT
    vertex_prompt_format = "{system}\n\nUser query:\n{user}\n"
    source_variable = "COURSEGPT_ROUTER_SOURCE"
    preview_columns = ("user_query", "difficulty", "route_plan")
    columns = frozenset({*REQUIRED_TYPES, *OPTIONAL_TYPES})
    benchmark_preview_columns = ("id", "source", "user_query", "categories")
    counted_fields = ("source", "categories")
    headline_metrics = evaluation.HEADLINE
    lower_is_better = evaluation.LOWER_IS_BETTER
    thresholds_path = DEFAULT_THRESHOLDS_PATH
    score_command = evaluation.SCORE_COMMAND
    intended_use = (
        "The router agent of CourseGPT-Pro: given a student's request it emits a strict-JSON route plan "
        "(route_plan, route_rationale, expected_artifacts, thinking_outline, handoff_plan, todo_list, "
        "difficulty, tags, acceptance_criteria, metrics) that hands work to the `/math`, `/code` and "
        "`/general-search` specialists. It plans; it does not run any tool itself. Parse and validate the "
        "JSON before acting on it, and keep a fallback for plans that do not parse."
    )
    synthetic_data = True  # Router-agent-data: traces generated by a large model

    def load_raw(self, source: str, *, seed: int, subset_size: int | None,
                 read: dict | None = None) -> Iterator[RawRow]:
        rows = iter_source(source)
        if subset_size is None:
            yield from rows
            return
        for row in rows:
            if row.line > subset_size:
                break
            yield row

    def validate(self, record: dict) -> list[str]:
        return validate(record)

    def clean_record(self, record: dict) -> dict:
        return record  # router records keep the source schema, byte for byte

    def record_id(self, record: dict, line: int) -> str:
        return str(record.get("id") or f"router_line_{line}")

    def dedup_key(self, record: dict) -> str:
        return normalise_text(record["user_query"])

    def user_text(self, record: dict) -> str:
        return record["user_query"]

    def assistant_text(self, record: dict) -> str:
        return json.dumps(completion_object(record), ensure_ascii=False)

    def vertex_prompt(self, record: dict) -> str:
        return render_vertex_prompt(self.vertex_prompt_format, SYSTEM_PROMPT, self.user_text(record))

    def benchmark_rows(self, split, *, seed: int, config) -> tuple[list[dict], list[dict]]:
        rows = evaluation.router_rows(self, split("test"), split("validation"), seed=seed,
                                      hard_per_category=config.hard_per_category)
        if not config.include_external:
            return rows, []
        return rows + evaluation.hard_benchmark_rows(self), [evaluation.hard_benchmark_file()]

    def benchmark_question(self, row: dict) -> str:
        return normalise_text(row.get("user_query") or "")

    def benchmark_messages(self, row: dict) -> list[dict]:
        return build_messages(SYSTEM_PROMPT, row["user_query"])

    def reference_answer(self, row: dict) -> str | None:
        return row.get("completion")  # the gold plan, as the tuning completion renders it

    def score(self, rows: list[dict], completions: list[str]):
        return evaluation.benchmark_score(rows, completions)


AGENT = RouterAgent()
