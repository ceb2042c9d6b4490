"""A tiny, safe evaluator for `expression_is_true` / `where`: Python-like row expressions, never `eval`.

An expression is parsed once with `ast` and only a whitelist of node kinds is accepted: names (a row's
columns, plus True/False/None), literals, comparisons (incl. chained and `in`), `and`/`or`/`not`,
arithmetic, constant subscripts (`metrics['primary']`) and calls to a few named pure functions.
Attribute access, lambdas, comprehensions and every other construct are rejected at load time, so a
schema.yml entry cannot run code. Evaluation walks the tree itself.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

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

    def __call__(self, row: Mapping):
        return _eval(self.tree, row)


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
    return Expression(text=text.strip(), tree=tree, columns=frozenset(columns))


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


def _eval(node: ast.expr, row: Mapping):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return CONSTANTS[node.id] if node.id in CONSTANTS else row.get(node.id)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result = True
            for value in node.values:
                result = _eval(value, row)
                if not result:
                    return result
            return result
        result = False
        for value in node.values:
            result = _eval(value, row)
            if result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, row)
        if isinstance(node.op, ast.Not):
            return not operand
        return -operand if isinstance(node.op, ast.USub) else +operand
    if isinstance(node, ast.BinOp):
        return _BIN[type(node.op)](_eval(node.left, row), _eval(node.right, row))
    if isinstance(node, ast.Compare):
        left = _eval(node.left, row)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _eval(comparator, row)
            if not _CMP[type(op)](left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        return FUNCTIONS[node.func.id](*(_eval(a, row) for a in node.args))
    if isinstance(node, ast.Subscript):
        container = _eval(node.value, row)
        key = node.slice.value
        if isinstance(container, Mapping):
            return container.get(key)
        return container[key]
    if isinstance(node, ast.IfExp):
        return _eval(node.body, row) if _eval(node.test, row) else _eval(node.orelse, row)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_eval(e, row) for e in node.elts]
    if isinstance(node, ast.Set):
        return {_eval(e, row) for e in node.elts}
    raise ExpressionError(f"{type(node).__name__} cannot be evaluated")  # unreachable after _vet
