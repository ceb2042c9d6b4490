"""Code agent: validation of OpenCoder educational_instruct rows, the fixture's tests, subsets, hf:// errors."""

import json

import pytest

from coursegpt_assets.agents import get_agent
from coursegpt_assets.agents.base import tuning_row
from coursegpt_assets.core.settings import FIXTURES_DIR
from coursegpt_assets.data.sources import SourceError

AGENT = get_agent("code")
CODE = "def add(a, b):\n    return a + b\n"


def row(**overrides):
    base = {
        "instruction": "Write a function `add(a, b)` that returns the sum of two numbers.",
        "output": f"Here is the function:\n\n```python\n{CODE}```",
        "code": CODE,
        "entry_point": "add",
        "testcase": ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"],
    }
    return {**base, **overrides}


def fixture_rows():
    return [json.loads(line) for line in (FIXTURES_DIR / "code.jsonl").read_text().splitlines()]


def test_a_well_formed_row_is_valid():
    assert AGENT.validate(row()) == []


@pytest.mark.parametrize(
    "overrides",
    [
        {"code": "class Adder:\n    def add(self, a, b):\n        return a + b\n", "entry_point": "Adder",
         "testcase": ["assert Adder().add(1, 2) == 3"]},
        {"code": "import asyncio\n\nasync def add(a, b):\n    return a + b\n",
         "testcase": ["assert asyncio.run(add(1, 2)) == 3"]},
        {"testcase": ["assert add(1, 2) == 3, 'with a message'", "assert add(0, 0) == 0; assert add(2, 2) == 4"]},
        {"id": "opc-1", "language": "python"},
    ],
)
def test_other_valid_shapes(overrides):
    assert AGENT.validate(row(**overrides)) == []


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"instruction": "  "}, "instruction is missing or empty"),
        ({"output": None}, "output is missing or empty"),
        ({"code": ""}, "code is missing or empty"),
        ({"entry_point": 7}, "entry_point is missing or empty"),
        ({"code": "def add(a, b)\n    return a + b\n"}, "code does not parse as Python (line 1: expected ':')"),
        ({"entry_point": "plus"}, "entry_point 'plus' is not defined at the top level of the code"),
        ({"code": "def outer():\n    def add(a, b):\n        return a + b\n    return add\n"},
         "entry_point 'add' is not defined at the top level"),
        ({"code": "add = lambda a, b: a + b\n"}, "entry_point 'add' is not defined at the top level"),
        ({"testcase": "assert add(1, 2) == 3"}, "testcase: expected a non-empty list of assert strings, got str"),
        ({"testcase": []}, "testcase: expected a non-empty list"),
        ({"testcase": ["assert add(1, 2) == 3", "print(add(1, 2))"]}, "testcase[1]: not an assert statement"),
        ({"testcase": ["x = add(1, 2); assert x == 3"]}, "testcase[0]: not an assert statement"),
        ({"testcase": ["assert add(1, 2 == 3"]}, "testcase[0]: does not parse"),
        ({"testcase": [None]}, "testcase[0]: expected a non-empty string"),
        ({"instruction": "x" * 8001}, "instruction has 8,001 characters (limit 8,000)"),
    ],
)
def test_invalid_rows_say_why(overrides, reason):
    problems = AGENT.validate(row(**overrides))
    assert problems and any(reason in p for p in problems), problems


def test_missing_fields_and_bad_tests_are_reported_together():
    problems = AGENT.validate({"instruction": "x", "testcase": ["nope("]})
    assert "output is missing or empty" in problems and any(p.startswith("testcase[0]") for p in problems)


def test_every_valid_fixture_row_passes_its_own_tests():
    """The fixture's reference solutions really satisfy their asserts (run once, in-process)."""
    rows = fixture_rows()
    valid = [r for r in rows if not AGENT.validate(r)]
    assert len(rows) - len(valid) <= 0.05 * len(rows) and len(valid) >= 40
    for r in valid:
        namespace: dict = {}
        exec(compile(r["code"], f"<{r['entry_point']}>", "exec"), namespace)  # noqa: S102 - our own fixture
        for test in r["testcase"]:
            exec(compile(test, f"<test {r['entry_point']}>", "exec"), dict(namespace))  # noqa: S102


def test_ids_prefer_the_source_id_then_a_hash_of_the_instruction():
    assert AGENT.record_id(row(seq_id=123), 4) == "123"
    a = AGENT.record_id(row(), 1)
    assert a.startswith("code_") and a == AGENT.record_id(row(instruction=row()["instruction"].upper() + " "), 9)
    ids = {AGENT.record_id(r, i) for i, r in enumerate(fixture_rows(), start=1)}
    assert len(ids) == len(fixture_rows())


def test_clean_records_and_tuning_rows():
    clean = {**AGENT.clean_record(row(instruction="  Add two numbers. ", extra="dropped")), "id": "c1"}
    assert set(clean) == {"instruction", "output", "code", "entry_point", "testcase", "id"}
    tuned = tuning_row(AGENT, clean, "llama3")
    assert tuned["text_prompt"] == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nYou are an expert programming assistant."
        "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nAdd two numbers.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    assert tuned["text_completion"] == clean["output"] + "<|eot_id|>"
    assert tuned["prompt"] == "You are an expert programming assistant.\n\nTask:\nAdd two numbers.\n"


def test_the_whole_source_is_read_without_a_subset_and_a_seeded_one_with(tmp_path):
    source = str(FIXTURES_DIR / "code.jsonl")
    everything = list(AGENT.load_raw(source, seed=42, subset_size=None))
    assert [r.line for r in everything] == list(range(1, len(fixture_rows()) + 1))
    first = list(AGENT.load_raw(source, seed=42, subset_size=10))
    assert [r.record for r in first] == [r.record for r in AGENT.load_raw(source, seed=42, subset_size=10)]
    other = list(AGENT.load_raw(source, seed=1, subset_size=10))
    valid = [[r for r in rows if AGENT.is_valid_row(r)] for rows in (first, other)]
    assert [len(v) for v in valid] == [10, 10]  # the fixture's invalid rows never take one of the 10 places
    assert {r.line for r in first} != {r.line for r in other}


def test_hf_source_offline_fails_with_a_message_that_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(SourceError) as err:
        list(AGENT.load_raw("hf://OpenCoder-LLM/opc-sft-stage2:educational_instruct", seed=42, subset_size=None))
    message = str(err.value)
    assert "OpenCoder-LLM/opc-sft-stage2" in message and "educational_instruct" in message
    assert "COURSEGPT_<AGENT>_SOURCE" in message
