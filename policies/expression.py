"""Conditions over model metadata in policy files, e.g. `schema == 'marts' and materialized == 'view'`.

Policy text is not trusted code, so this never calls `eval`: the text is parsed with Python's `ast`
and only a whitelist of node types is walked. Allowed: the metadata names the caller offers, string,
number, boolean and None literals, tuples and lists of them, `and`, `or`, `not`, unary minus and
comparisons (`== != < <= > >= in not in is is not`). Everything else (attribute access, calls,
subscripts, lambdas, comprehensions, f-strings, arithmetic) is refused when the policy is loaded.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_LENGTH = 1000
MAX_NODES = 200

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge, ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b, ast.Is: operator.is_, ast.IsNot: operator.is_not,
}
_ALLOWED = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub,
            ast.Compare, ast.Name, ast.Load, ast.Constant, ast.Tuple, ast.List, *_COMPARE)
_REFUSED_WHY = {
    ast.Attribute: "attribute access ('.') is not allowed",
    ast.Call: "function calls are not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.Subscript: "indexing and slicing are not allowed",
    ast.NamedExpr: "assignment (':=') is not allowed",
    ast.JoinedStr: "f-strings are not allowed",
    ast.BinOp: "arithmetic is not allowed",
    ast.IfExp: "'x if c else y' is not allowed; use 'and'/'or'",
    ast.ListComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.Starred: "'*' unpacking is not allowed",
    ast.Await: "await is not allowed",
}


class ExpressionError(ValueError):
    """The condition is not in the allowed language, or cannot be evaluated for a model."""


@dataclass(frozen=True)
class Condition:
    text: str
    names: frozenset[str]
    tree: ast.Expression = field(compare=False, repr=False)

    def evaluate(self, values: Mapping[str, Any]) -> bool:
        try:
            return bool(_value(self.tree.body, values))
        except TypeError as exc:
            raise ExpressionError(f"{self.text!r} cannot be evaluated: {exc}") from None


def compile_condition(text: str, names: Iterable[str]) -> Condition:
    """Parse and check `text`; raises ExpressionError naming what is not allowed."""
    allowed_names = frozenset(names)
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the condition is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the condition is longer than {MAX_LENGTH} characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        detail = exc.msg if isinstance(exc, SyntaxError) else str(exc) or type(exc).__name__
        raise ExpressionError(f"{text!r} is not a valid condition: {detail}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ExpressionError(f"the condition is too complex (more than {MAX_NODES} parts)")
    for node in nodes:
        if not isinstance(node, _ALLOWED):
            why = next((w for t, w in _REFUSED_WHY.items() if isinstance(node, t)),
                       f"'{type(node).__name__}' is not allowed")
            raise ExpressionError(f"{text!r}: {why}; allowed are names, literals, comparisons, "
                                  "'in', 'and', 'or' and 'not'")
        if isinstance(node, ast.Name) and node.id not in allowed_names:
            raise ExpressionError(f"{text!r}: unknown name {node.id!r}; use one of "
                                  f"{', '.join(sorted(allowed_names))}")
        if isinstance(node, ast.Constant) and not isinstance(node.value, str | int | float | bool | None):
            raise ExpressionError(f"{text!r}: literal {node.value!r} is not allowed")
    return Condition(text=text, names=allowed_names, tree=tree)


def _value(node: ast.expr, values: Mapping[str, Any]) -> Any:
    # Only node types that compile_condition let through can reach here.
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return values.get(node.id)
    if isinstance(node, ast.Tuple | ast.List):
        return tuple(_value(e, values) for e in node.elts)
    if isinstance(node, ast.BoolOp):
        if isinstance(node.op, ast.And):
            result: Any = True
            for e in node.values:
                result = _value(e, values)
                if not result:
                    return result
            return result
        result = False
        for e in node.values:
            result = _value(e, values)
            if result:
                return result
        return result
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not operand
        if isinstance(operand, bool) or not isinstance(operand, int | float):
            raise TypeError(f"'-' needs a number, got {type(operand).__name__}")
        return -operand
    if isinstance(node, ast.Compare):
        left = _value(node.left, values)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = _value(right_node, values)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True
    raise ExpressionError(f"'{type(node).__name__}' is not allowed")  # unreachable after compiling
