"""Reads schema.yml (dbt's shape) into validated TestSpecs; every mistake is reported with file and line.

    version: 2
    models:
      - name: clean_examples                 # an asset key
        data_tests:                          # asset-level tests (`tests:` is accepted too)
          - row_count_between: {min_value: 10, config: {severity: error, blocking: true}}
        columns:
          - name: difficulty
            config: {partitions: [router]}   # the column exists in these partitions only
            data_tests:
              - accepted_values:
                  arguments: {values: [introductory, intermediate, advanced]}   # or inline, as dbt < 1.10
                  config: {severity: warn}

Test `config:` keys: severity (warn|error), blocking (only with error: a failure stops downstream
assets), warn_if / error_if (dbt thresholds such as ">10", default "!=0"), where (a row expression),
partitions (where the test applies), split (one split of a split asset), enabled, meta. Argument
values may be `{{ plan.<name> }}` (see catalog.PLAN_VALUES) and `to: ref('<asset>')` (+ `to_split`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from dbt_style_checks.catalog import PLAN_VALUES, SOURCES, AssetSource, agent_of
from dbt_style_checks.expressions import Expression, ExpressionError, compile_expression
from dbt_style_checks.generic_tests import GENERIC_TESTS, GenericTest
from dbt_style_checks.yaml_lines import LineDict, LineList, load_with_lines

DEFAULT_SCHEMA = Path(__file__).resolve().parent / "schema.yml"
SEVERITIES = ("warn", "error")
CONFIG_KEYS = {"severity", "blocking", "warn_if", "error_if", "where", "partitions", "split", "enabled", "meta"}
LOADER_ARGUMENTS = {"to_split"}
PLAN_REF = re.compile(r"^\{\{\s*plan\.(\w+)\s*\}\}$")
REF = re.compile(r"""^ref\(\s*['"](\w+)['"]\s*\)$""")
_THRESHOLD = re.compile(r"^\s*(==|!=|>=|<=|>|<)\s*(\d+)\s*$")


class SchemaError(ValueError):
    """schema.yml is malformed; the message lists every problem as `<file>:<line>: <what>`."""


@dataclass(frozen=True)
class Threshold:
    op: str
    value: int

    def __call__(self, failures: int) -> bool:
        return {"==": failures == self.value, "!=": failures != self.value, ">=": failures >= self.value,
                "<=": failures <= self.value, ">": failures > self.value, "<": failures < self.value}[self.op]

    def __str__(self) -> str:
        return f"{self.op}{self.value}"


@dataclass(frozen=True)
class TestSpec:
    """One compiled schema.yml test: which function, on which asset/column, with what arguments."""

    asset: str
    column: str | None
    test: GenericTest
    arguments: dict
    name: str
    severity: str = "error"
    blocking: bool = False
    warn_if: Threshold = Threshold("!=", 0)
    error_if: Threshold = Threshold("!=", 0)
    where: Expression | None = None
    partitions: tuple[str, ...] | None = None
    split: str | None = None
    description: str | None = None
    location: str = ""
    columns: frozenset[str] = field(default_factory=frozenset)  # every column the test reads

    @property
    def source(self) -> AssetSource:
        return SOURCES[self.asset]

    def applies_to(self, partition: str) -> bool:
        return self.partitions is None or partition in self.partitions


class _Reader:
    """Walks the parsed YAML, collecting errors instead of stopping at the first one."""

    def __init__(self, path: Path):
        self.path, self.errors, self.tests = path, [], []

    def error(self, line: int, message: str) -> None:
        self.errors.append(f"{self.path}:{line}: {message}")

    def read(self, doc) -> list[TestSpec]:
        if not isinstance(doc, LineDict) or not isinstance(doc.get("models"), LineList):
            self.error(getattr(doc, "line", 1), "expected a mapping with a `models:` list")
            return []
        for key in set(doc) - {"version", "models"}:
            self.error(doc.line_of(key), f"unknown top-level key {key!r} (expected version, models)")
        for i, model in enumerate(doc["models"]):
            self.model(model, doc["models"].item_lines[i])
        seen: dict[tuple[str, str], str] = {}
        for t in self.tests:
            if (t.asset, t.name) in seen:
                self.errors.append(f"{t.location}: check name {t.name!r} on {t.asset} is already used at "
                                   f"{seen[t.asset, t.name]}; give one of them a `name:`")
            seen[t.asset, t.name] = t.location
        return self.tests

    def model(self, model, line: int) -> None:
        if not isinstance(model, LineDict) or "name" not in model:
            return self.error(line, "a model needs a `name:` (an asset key)")
        name = model["name"]
        if name not in SOURCES:
            return self.error(model.line_of("name"), f"unknown asset {name!r} (testable assets: {', '.join(SOURCES)})")
        for key in set(model) - {"name", "description", "columns", "data_tests", "tests", "meta", "config"}:
            self.error(model.line_of(key), f"{name}: unknown key {key!r}")
        for entry, entry_line in self.entries(model, line):
            self.test(entry, entry_line, SOURCES[name], None, None)
        columns = model.get("columns") or LineList()
        for i, col in enumerate(columns):
            col_line = columns.item_lines[i]
            if not isinstance(col, LineDict) or not isinstance(col.get("name"), str):
                self.error(col_line, f"{name}: a column needs a `name:`")
                continue
            for key in set(col) - {"name", "description", "data_type", "data_tests", "tests", "config", "meta", "quote"}:
                self.error(col.line_of(key), f"{name}.{col['name']}: unknown key {key!r}")
            partitions = self.partitions((col.get("config") or {}).get("partitions"), col, SOURCES[name])
            self.known_columns(SOURCES[name], [col["name"]], partitions, col.line_of("name"))
            for entry, entry_line in self.entries(col, col_line):
                self.test(entry, entry_line, SOURCES[name], col["name"], partitions)

    def entries(self, node: LineDict, line: int):
        if "data_tests" in node and "tests" in node:
            self.error(line, "use either `data_tests:` or `tests:`, not both")
        items = node.get("data_tests", node.get("tests")) or LineList()
        if not isinstance(items, LineList):
            return self.error(line, "`data_tests:` must be a list") or []
        return list(zip(items, items.item_lines, strict=True))

    def partitions(self, value, node: LineDict, source: AssetSource) -> tuple[str, ...] | None:
        if value is None:
            return None
        if not isinstance(value, list) or not value:
            self.error(node.line, "config.partitions must be a non-empty list")
            return None
        unknown = [p for p in value if not source.expand([p])]
        if unknown:
            self.error(node.line, f"{source.name}: unknown partitions {unknown} (known: {source.partition_keys})")
        return source.expand(value)

    def known_columns(self, source: AssetSource, names, partitions, line: int) -> None:
        for partition in partitions or source.partition_keys:
            known = source.columns_for(partition)
            for name in names:
                if known is not None and name not in known:
                    hint = "" if partitions else "; limit it with config: {partitions: [...]}"
                    self.error(line, f"unknown column {name!r} in {source.name} for partition {partition!r} "
                                     f"(known: {', '.join(sorted(known))}){hint}")

    def test(self, entry, line: int, source: AssetSource, column: str | None, col_partitions) -> None:
        """Compile one test entry into a TestSpec, or record why it cannot be."""
        parsed = self.test_entry(entry, line)
        if parsed is None:
            return None
        kind, body = parsed
        generic = GENERIC_TESTS[kind]
        config = body.get("config") or LineDict(line=body.line)
        if not isinstance(config, LineDict):
            return self.error(body.line_of("config"), f"{kind}: config must be a mapping")
        args = self.test_arguments(kind, generic, body, line, source, column)
        if args is None:
            return None
        severity, blocking, partitions, split = self.test_config(kind, config, source, col_partitions)
        referenced = self.arguments(kind, generic, args, body, source, partitions)
        where = self.expression(config.get("where"), config.line_of("where"), kind) if "where" in config else None
        if where is not None:
            referenced |= where.columns
        self.known_columns(source, sorted(referenced), partitions, line)
        if config.get("enabled", True) is False:
            return None
        self.tests.append(TestSpec(
            asset=source.name, column=column, test=generic, arguments=args, name=_check_name(body, kind, referenced),
            severity=severity, blocking=bool(blocking), warn_if=self.threshold(config, "warn_if", kind),
            error_if=self.threshold(config, "error_if", kind), where=where, partitions=partitions, split=split,
            description=body.get("description"), location=f"{self.path}:{line}", columns=frozenset(referenced),
        ))

    def test_entry(self, entry, line: int) -> tuple[str, LineDict] | None:
        """(test name, its mapping) from any of the shapes dbt accepts: a name, `{test: {...}}`, `{test_name: ...}`."""
        if isinstance(entry, str):
            kind, body = entry, LineDict(line=line)
        elif isinstance(entry, LineDict) and "test_name" in entry:
            kind, body = entry["test_name"], entry
        elif isinstance(entry, LineDict) and len(entry) == 1:
            kind, body = next(iter(entry.items()))
            if body is None:
                body = LineDict(line=line)
        else:
            return self.error(line, "a test is a name or a one-key mapping `<test>: {arguments..., config: ...}`")
        if kind not in GENERIC_TESTS:
            return self.error(line, f"unknown test {kind!r} (known: {', '.join(sorted(GENERIC_TESTS))})")
        if not isinstance(body, LineDict):
            return self.error(line, f"{kind}: expected a mapping of arguments")
        return kind, body

    def test_arguments(self, kind, generic: GenericTest, body: LineDict, line: int, source: AssetSource,
                       column: str | None) -> dict | None:
        """The test's arguments (inline or under `arguments:`, plus its column); None when it cannot apply here."""
        meta = {"name", "description", "config", "arguments", "test_name"}
        args = dict(body.get("arguments") or {})
        args.update({k: v for k, v in body.items() if k not in meta})
        if column is not None:
            if not generic.is_column_test:
                return self.error(line, f"{kind} is an asset-level test; list it under the model's data_tests")
            args.setdefault("column_name", column)
        if generic.takes == "splits" and source.splits is None:
            return self.error(line, f"{kind} needs a split asset; {source.name} has no splits")
        for key in set(args) - set(generic.parameters) - LOADER_ARGUMENTS:
            self.error(_arg_line(body, key), f"{kind}: unknown argument {key!r} (arguments: {', '.join(generic.parameters)})")
        for key in generic.required - set(args):
            self.error(line, f"{kind}: missing required argument {key!r}")
        return args

    def test_config(self, kind, config: LineDict, source: AssetSource, col_partitions):
        """(severity, blocking, partitions, split) from the test's `config:`, each checked."""
        for key in set(config) - CONFIG_KEYS:
            self.error(config.line_of(key), f"{kind}: unknown config key {key!r} (known: {', '.join(sorted(CONFIG_KEYS))})")
        severity = str(config.get("severity", "error")).lower()
        if severity not in SEVERITIES:
            self.error(config.line_of("severity"), f"{kind}: bad severity {config.get('severity')!r} (warn or error)")
        blocking = config.get("blocking", False)
        if not isinstance(blocking, bool):
            self.error(config.line_of("blocking"), f"{kind}: blocking must be true or false")
        elif blocking and severity != "error":
            self.error(config.line_of("blocking"), f"{kind}: blocking needs severity error (Dagster blocks on ERROR only)")
        partitions = self.partitions(config.get("partitions"), config, source) or col_partitions
        split = config.get("split")
        if split is not None and split not in (source.splits or ()):
            self.error(config.line_of("split"), f"{kind}: split {split!r} is not a split of {source.name}")
        return severity, blocking, partitions, split

    def arguments(self, kind, generic: GenericTest, args: dict, body: LineDict, source, partitions) -> set[str]:
        referenced: set[str] = set()
        for key, value in list(args.items()):
            line = _arg_line(body, key)
            if isinstance(value, str) and (m := PLAN_REF.match(value)):
                level = PLAN_VALUES.get(m.group(1), (None,))[0]
                if m.group(1) not in PLAN_VALUES:
                    self.error(line, f"{kind}: unknown plan value {m.group(1)!r} (known: {', '.join(PLAN_VALUES)})")
                elif level and level != source.level:
                    self.error(line, f"{kind}: plan.{m.group(1)} needs a per-{level} asset; {source.name} is per {source.level}")
            if key in generic.column_params:
                names = value if isinstance(value, list) else [value]
                if not all(isinstance(n, str) for n in names):
                    self.error(line, f"{kind}: {key} must name columns")
                referenced |= {n for n in names if isinstance(n, str)}
            if key == "expression":
                expr = self.expression(value, line, kind)
                if expr is not None:
                    args[key] = expr
                    referenced |= expr.columns
        if "to" in args:
            self.reference(kind, args, body, source, partitions)
        return referenced

    def reference(self, kind, args: dict, body: LineDict, source: AssetSource, partitions) -> None:
        m = REF.match(str(args["to"]))
        line = _arg_line(body, "to")
        if not m or m.group(1) not in SOURCES:
            return self.error(line, f"{kind}: `to` must be ref('<asset>') naming one of {', '.join(SOURCES)}")
        target = SOURCES[m.group(1)]
        if target.level == "pair" and source.level == "agent":
            return self.error(line, f"{kind}: {source.name} (per agent) cannot refer to {target.name} (per pair)")
        split = args.get("to_split")
        if split is not None and split not in (target.splits or ()):
            self.error(_arg_line(body, "to_split"), f"{kind}: to_split {split!r} is not a split of {target.name}")
        if isinstance(args.get("field"), str):
            agents = tuple(sorted({agent_of(p) for p in (partitions or source.partition_keys)}))
            self.known_columns(target, [args["field"]], agents if target.level == "agent" else partitions, line)

    def expression(self, text, line: int, kind: str) -> Expression | None:
        try:
            return compile_expression(text)
        except ExpressionError as e:
            self.error(line, f"{kind}: {e}")
            return None

    def threshold(self, config: LineDict, key: str, kind: str) -> Threshold:
        if key not in config:
            return Threshold("!=", 0)
        m = _THRESHOLD.match(str(config[key]))
        if not m:
            self.error(config.line_of(key), f"{kind}: {key} {config[key]!r} is not a condition like '>10' or '!=0'")
            return Threshold("!=", 0)
        return Threshold(m.group(1), int(m.group(2)))


def _check_name(body: LineDict, kind: str, referenced: set[str]) -> str:
    """The test's `name:`, else `<test>_<columns>`; characters a check name cannot hold become `_`."""
    name = body.get("name") or "_".join([kind, *sorted(c for c in referenced if c)])
    if not re.fullmatch(r"[A-Za-z0-9_]+", str(name)):
        name = re.sub(r"[^A-Za-z0-9_]", "_", str(name))
    return name


def _arg_line(body: LineDict, key: str) -> int:
    """The line of argument `key`, written inline or under `arguments:`."""
    if key in body:
        return body.line_of(key)
    nested = body.get("arguments")
    return nested.line_of(key) if isinstance(nested, LineDict) and key in nested else body.line


def load_schema(path: str | Path | None = None) -> list[TestSpec]:
    """All tests of `path` (default: the schema.yml next to this module); raises SchemaError listing every problem."""
    path = Path(path or DEFAULT_SCHEMA)
    if not path.is_file():
        raise SchemaError(f"{path}: schema file not found")
    try:
        doc = load_with_lines(path)
    except ValueError as e:
        raise SchemaError(str(e)) from None
    reader = _Reader(path)
    tests = reader.read(doc)
    if reader.errors:
        raise SchemaError("\n".join(sorted(set(reader.errors), key=_line_order)))
    return tests


def _line_order(message: str) -> tuple[str, int]:
    file, _, rest = message.partition(":")
    line = rest.split(":", 1)[0]
    return file, int(line) if line.isdigit() else 0
