"""A tiny, safe evaluator for `expression_is_true` / `where`: Python-like row expressions, never `eval`.

An expression is parsed once with `ast` and only a whitelist of node kinds is accepted: names (a row's
columns, plus True/False/None), literals, comparisons (incl. chained and `in`), `and`/`or`/`not`,
arithmetic, constant subscripts (`metrics['primary']`) and calls to a few named pure functions.
Attribute access, lambdas, comprehensions and every other construct are rejected at load time, so a
schema.yml entry cannot run code. The vetted tree is turned into closures once (`_compile`), not `eval`.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

_WS = re.compile(r"\s+")


def _strip(value):
    return str(value).strip()


def _lower(value):
    return str(value).lower()


def _normalise(value):
    return _WS.sub(" ", str(value)).strip().lower()


FUNCTIONS: dict[str, Callable] = {
    "len": len, "abs": abs, "min": min, "max": max, "round": round,
    "str": str, "int": int, "float": float, "bool": bool,
    "strip": _strip, "lower": _lower, "normalise": _normalise,
    "startswith": lambda value, prefix: str(value).startswith(prefix),
    "endswith": lambda value, suffix: str(value).endswith(suffix),
    "is_list": lambda value: isinstance(value, list),
    "is_dict": lambda value: isinstance(value, dict),
    "is_str": lambda value: isinstance(value, str),
}
CONSTANTS = {"True": True, "False": False, "None": None}

_BIN = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
}
_CMP = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}


class ExpressionError(ValueError):
    """The expression uses something outside the whitelist or does not parse."""


@dataclass(frozen=True)
class Expression:
    text: str
    tree: ast.expr
    columns: frozenset[str]
    evaluate: Callable[[Mapping], object] = field(repr=False, compare=False, default=None)

    def __call__(self, row: Mapping):
        return self.evaluate(row)


def compile_expression(text: str) -> Expression:
    """Parse and vet `text`; the returned Expression evaluates against one row (a mapping)."""
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("expected a non-empty expression string")
    try:
        tree = ast.parse(text.strip(), mode="eval").body
    except SyntaxError as e:
        raise ExpressionError(f"{text!r} does not parse: {e.msg}") from None
    columns: set[str] = set()
    _vet(tree, columns, text)
    return Expression(text=text.strip(), tree=tree, columns=frozenset(columns), evaluate=_compile(tree))


def _vet(node: ast.AST, columns: set[str], text: str) -> None:
    if isinstance(node, ast.Name):
        if node.id not in CONSTANTS:
            columns.add(node.id)
        return
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS or node.keywords:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise ExpressionError(f"{text!r}: call to {name!r} is not allowed (functions: {', '.join(FUNCTIONS)})")
        for arg in node.args:
            _vet(arg, columns, text)
        return
    if isinstance(node, ast.Subscript):
        if not isinstance(node.slice, ast.Constant):
            raise ExpressionError(f"{text!r}: only constant subscripts like x['key'] or x[0] are allowed")
        _vet(node.value, columns, text)
        return
    allowed = (
        ast.Constant, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.BinOp,
        ast.Compare, ast.List, ast.Tuple, ast.Set, ast.IfExp, ast.Load, *_BIN, *_CMP,
    )
    if not isinstance(node, allowed):
        raise ExpressionError(f"{text!r}: {type(node).__name__} is not allowed in a check expression")
    for child in ast.iter_child_nodes(node):
        _vet(child, columns, text)


def _compile(node: ast.expr) -> Callable[[Mapping], object]:
    """The vetted tree as nested closures, built once: evaluating a row then costs no tree walk (a check
    evaluates its expression on every row). Semantics are those of Python on the row's values."""
    if isinstance(node, ast.Constant):
        value = node.value
        return lambda row: value
    if isinstance(node, ast.Name):
        name = node.id
        if name in CONSTANTS:
            constant = CONSTANTS[name]
            return lambda row: constant
        return lambda row: row.get(name)
    if isinstance(node, ast.BoolOp):
        parts = [_compile(v) for v in node.values]
        want = not isinstance(node.op, ast.And)  # `and` stops at the first falsy value, `or` at a truthy one

        def boolean(row):
            result = not want
            for part in parts:
                result = part(row)
                if bool(result) is want:
                    return result
            return result

        return boolean
    if isinstance(node, ast.UnaryOp):
        operand = _compile(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda row: not operand(row)
        if isinstance(node.op, ast.USub):
            return lambda row: -operand(row)
        return lambda row: +operand(row)
    if isinstance(node, ast.BinOp):
        op, left, right = _BIN[type(node.op)], _compile(node.left), _compile(node.right)
        return lambda row: op(left(row), right(row))
    if isinstance(node, ast.Compare):
        first = _compile(node.left)
        chain = [(_CMP[type(op)], _compile(c)) for op, c in zip(node.ops, node.comparators, strict=True)]

        def compare(row):
            left = first(row)
            for op, comparator in chain:
                right = comparator(row)
                if not op(left, right):
                    return False
                left = right
            return True

        return compare
    if isinstance(node, ast.Call):
        fn, args = FUNCTIONS[node.func.id], [_compile(a) for a in node.args]
        if len(args) == 1:
            only = args[0]
            return lambda row: fn(only(row))
        return lambda row: fn(*(a(row) for a in args))
    if isinstance(node, ast.Subscript):
        container, key = _compile(node.value), node.slice.value

        def subscript(row):
            value = container(row)
            return value.get(key) if isinstance(value, Mapping) else value[key]

        return subscript
    if isinstance(node, ast.IfExp):
        test, body, orelse = _compile(node.test), _compile(node.body), _compile(node.orelse)
        return lambda row: body(row) if test(row) else orelse(row)
    if isinstance(node, (ast.List, ast.Tuple)):
        elements = [_compile(e) for e in node.elts]
        return lambda row: [e(row) for e in elements]
    if isinstance(node, ast.Set):
        elements = [_compile(e) for e in node.elts]
        return lambda row: {e(row) for e in elements}
    raise ExpressionError(f"{type(node).__name__} cannot be evaluated")  # unreachable after _vet
