"""GX row conditions (conditional expectations), compiled to row filters.

GX 1.24 takes a ``row_condition`` in three forms, and on pandas data runs
each as ``DataFrame.query``:

- a string with ``condition_parser: "great_expectations"`` (or its
  ``__experimental__`` alias): ``col("action")=="store"``, ``col("n")>2``,
  ``col("email").notnull()``, converted by GX to a comparison;
- a string with ``condition_parser: "pandas"`` (or none): pandas' own query
  syntax, e.g. ``action == "store" and size > 10``, ``action in ["a", "b"]``,
  ``email.isnull()``, ``~(a == 1) | (b != "x")``, backticks for odd names;
- GX's serialised ``Condition`` objects: ``{"type": "comparison", "column":
  {"name": ...}, "operator": "==", "parameter": ...}``, ``nullity``, ``and``,
  ``or``, ``pass_through``.

Each compiles to a ``RowCondition`` that picks the rows of a batch the way
pandas' query picks them from an object column: a null (None, NaN) is
unequal to everything, so ``!=`` and ``not in`` keep it and ``==``, ``<``
... drop it. The pandas subset here is what expectation suites use
(comparisons, membership, null tests, boolean logic); anything else (method
calls such as ``.str.startswith``, arithmetic, ``@variables``) is refused
at load with what is supported, never guessed at.
"""

from __future__ import annotations

import ast
import io
import math
import operator
import re
import tokenize
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RowCondition", "ConditionError", "compile_row_condition", "GX_PARSERS", "PANDAS_PARSERS"]

GX_PARSERS = ("great_expectations", "great_expectations__experimental__")
PANDAS_PARSERS = ("pandas", None)

# column values (one list per column the condition reads) -> row mask
_Mask = Callable[[Mapping[str, Sequence[Any]], int], list[bool]]


class ConditionError(ValueError):
    """A row condition this project cannot evaluate, and why."""


@dataclass(frozen=True)
class RowCondition:
    """A compiled row condition: which rows of a batch an expectation sees."""

    text: str  # canonical form, part of the window state's key
    columns: frozenset[str]
    _mask: _Mask

    def selected(self, rows: Sequence[Mapping[str, Any]]) -> list[int]:
        """Indices of the rows the condition keeps, in order."""
        columns = {name: [row.get(name) for row in rows] for name in self.columns}
        return [i for i, keep in enumerate(self._mask(columns, len(rows))) if keep]

    def selected_in_columns(self, columns: Mapping[str, Sequence[Any]], count: int) -> list[int]:
        return [i for i, keep in enumerate(self._mask(columns, count)) if keep]


def _null(value: Any) -> bool:
    return value is None or (type(value) is float and value != value)


_ORDERINGS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
}


def _compare(op: str, left: Any, right: Any) -> bool:
    """One row of pandas' object-column comparison."""
    if op == "==":
        return not _null(left) and not _null(right) and _equal(left, right)
    if op == "!=":
        return _null(left) or _null(right) or not _equal(left, right)
    if _null(left) or _null(right):
        return False
    try:
        return bool(_ORDERINGS[op](left, right))
    except TypeError:  # e.g. a number against a string: pandas raises, the row is not selected here
        return False


def _equal(left: Any, right: Any) -> bool:
    try:
        return bool(left == right)
    except TypeError:
        return False


def _member(value: Any, values: Sequence[Any]) -> bool:
    """pandas' ``isin``: a NaN matches a NaN in the list, None matches None."""
    if value is None:
        return any(v is None for v in values)
    if type(value) is float and math.isnan(value):
        return any(type(v) is float and math.isnan(v) for v in values)
    return any(v is not None and _equal(value, v) for v in values)


# --- the three forms, to one small tree ---------------------------------------------------------
# ("cmp", op, left, right) where left/right are ("col", name) or ("lit", value)
# ("in", operand, [values], negated); ("null", operand, is_null); ("and", [..]); ("or", [..]); ("not", x)


def compile_row_condition(row_condition: Any, condition_parser: Any) -> RowCondition:
    """Compile a ``row_condition`` as GX would read it; ``ConditionError`` names what is wrong."""
    if isinstance(row_condition, Mapping):
        tree = _from_gx_object(row_condition)
    elif isinstance(row_condition, str):
        if condition_parser in GX_PARSERS:
            tree = _from_gx_string(row_condition)
        elif condition_parser in PANDAS_PARSERS:
            tree = _from_pandas(row_condition)
        else:
            raise ConditionError(f"condition_parser {condition_parser!r} is not one GX reads pandas data with "
                                 "('great_expectations' or 'pandas')")
    else:
        raise ConditionError("row_condition must be a string or a GX Condition object")
    return RowCondition(_text(tree), frozenset(_columns(tree)), _masker(tree))


_GX_STRING = re.compile(
    r"""\s*col\("(?P<column>[^"]+)"\)\s*(?:
        (?P<notnull>\.notnull\(\))
      | (?P<op>>=|<=|==|!=|>|<)\s*(?:
            (?P<number>[+-]?\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)
          | (?:date\()?(?P<q>["'])(?P<text>[^"']+)(?P=q)\)?
        )
    )\s*$""",
    re.VERBOSE | re.IGNORECASE,
)


def _from_gx_string(text: str) -> tuple:
    """GX's own grammar (legacy_row_conditions): one column, one comparison or ``.notnull()``."""
    match = _GX_STRING.fullmatch(text)
    if not match:
        raise ConditionError(f"unable to parse condition: {text} (GX's syntax: col(\"name\") == \"value\", "
                             "col(\"name\") > 3, col(\"name\").notnull())")
    column = ("col", match["column"])
    if match["notnull"]:
        return ("null", column, False)
    if match["number"] is not None:
        try:
            value: Any = int(match["number"])
        except ValueError:
            value = float(match["number"])
    else:
        value = match["text"]
    return ("cmp", match["op"], column, ("lit", value))


_GX_OPERATORS = {"==", "!=", "<", "<=", ">", ">=", "IN", "NOT_IN"}


def _from_gx_object(node: Mapping[str, Any]) -> tuple:
    kind = node.get("type")
    if kind == "comparison":
        column = node.get("column")
        name = column.get("name") if isinstance(column, Mapping) else column
        op, parameter = node.get("operator"), node.get("parameter")
        if not isinstance(name, str) or op not in _GX_OPERATORS:
            raise ConditionError(f"a comparison needs column.name and an operator ({', '.join(sorted(_GX_OPERATORS))})")
        if op in ("IN", "NOT_IN"):
            if not isinstance(parameter, list):
                raise ConditionError(f"{op} needs a list parameter")
            return ("in", ("col", name), list(parameter), op == "NOT_IN")
        if parameter is None:
            raise ConditionError("a comparison with null: use a nullity condition (is_null)")
        return ("cmp", op, ("col", name), ("lit", parameter))
    if kind == "nullity":
        column = node.get("column")
        name = column.get("name") if isinstance(column, Mapping) else column
        if not isinstance(name, str):
            raise ConditionError("a nullity condition needs column.name")
        return ("null", ("col", name), bool(node.get("is_null")))
    if kind in ("and", "or"):
        parts = node.get("conditions")
        if not isinstance(parts, list) or not parts:
            raise ConditionError(f"an '{kind}' condition needs a list of conditions")
        return (kind, [_from_gx_object(p) if isinstance(p, Mapping) else _bad_part(p) for p in parts])
    if kind == "pass_through":
        text = node.get("pass_through_filter")
        if not isinstance(text, str):
            raise ConditionError("a pass_through condition needs pass_through_filter")
        return _from_pandas(text)
    raise ConditionError(f"condition type {kind!r} is not one of GX's (comparison, nullity, and, or, pass_through)")


def _bad_part(part: Any) -> tuple:
    raise ConditionError(f"{part!r} is not a condition object")


_BACKTICKED = re.compile(r"`([^`]*)`")
_NULL_TESTS = {"isnull": True, "isna": True, "notnull": False, "notna": False}
_PANDAS_HELP = ("supported: comparisons (== != < <= > >=), in / not in a list, column.isnull() / notnull() / isna() / "
                "notna(), and / or / not, & / | / ~, parentheses, `quoted names`")


def _pandas_source(text: str) -> tuple[str, dict[str, str]]:
    """pandas' query preprocessing: backticked names become identifiers and
    ``&``/``|`` take ``and``/``or``'s precedence (pandas.core.computation.expr)."""
    names: dict[str, str] = {}

    def name_for(match: re.Match) -> str:
        placeholder = f"_flowaudit_column_{len(names)}_"
        names[placeholder] = match.group(1)
        return placeholder

    out = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(_BACKTICKED.sub(name_for, text)).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise ConditionError(f"not a pandas query expression: {text} ({exc})") from None
    for token in tokens:
        if token.type == tokenize.OP and token.string == "&":
            out.append((tokenize.NAME, "and"))
        elif token.type == tokenize.OP and token.string == "|":
            out.append((tokenize.NAME, "or"))
        else:
            out.append((token.type, token.string))
    return tokenize.untokenize(out), names


def _from_pandas(text: str) -> tuple:
    source, names = _pandas_source(text)
    try:
        expression = ast.parse(source.strip(), mode="eval").body
    except SyntaxError as exc:
        raise ConditionError(f"not a pandas query expression: {text} ({exc.msg})") from None
    return _pandas_node(expression, names, text)


def _pandas_node(node: ast.AST, names: dict[str, str], text: str) -> tuple:
    if isinstance(node, ast.BoolOp):
        kind = "and" if isinstance(node.op, ast.And) else "or"
        return (kind, [_pandas_node(v, names, text) for v in node.values])
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.Not, ast.Invert)):
        return ("not", _pandas_node(node.operand, names, text))
    if isinstance(node, ast.Compare):
        parts = []
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            parts.append(_pandas_comparison(op, left, right, names, text))
            left = right
        return parts[0] if len(parts) == 1 else ("and", parts)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _NULL_TESTS \
            and not node.args and not node.keywords:
        return ("null", _operand(node.func.value, names, text), _NULL_TESTS[node.func.attr])
    if isinstance(node, ast.Name) or (isinstance(node, ast.Constant) and isinstance(node.value, bool)):
        # a boolean column (or literal) on its own
        return ("cmp", "==", _operand(node, names, text), ("lit", True))
    raise ConditionError(f"row_condition {text!r}: {ast.unparse(node)!r} is not supported ({_PANDAS_HELP})")


_PANDAS_OPS = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}


def _pandas_comparison(op: ast.cmpop, left: ast.AST, right: ast.AST, names: dict[str, str], text: str) -> tuple:
    if isinstance(op, (ast.In, ast.NotIn)):
        values = _literal(right, text)
        if not isinstance(values, (list, tuple)):
            values = [values]
        return ("in", _operand(left, names, text), list(values), isinstance(op, ast.NotIn))
    if type(op) not in _PANDAS_OPS:
        raise ConditionError(f"row_condition {text!r}: operator {type(op).__name__} is not supported ({_PANDAS_HELP})")
    return ("cmp", _PANDAS_OPS[type(op)], _operand(left, names, text), _operand(right, names, text))


def _operand(node: ast.AST, names: dict[str, str], text: str) -> tuple:
    if isinstance(node, ast.Name):
        return ("col", names.get(node.id, node.id))
    return ("lit", _literal(node, text))


def _literal(node: ast.AST, text: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        raise ConditionError(f"row_condition {text!r}: {ast.unparse(node)!r} is neither a column nor a literal "
                             f"({_PANDAS_HELP})") from None


# --- evaluation ----------------------------------------------------------------------------------


def _columns(tree: tuple) -> set[str]:
    kind = tree[0]
    if kind == "col":
        return {tree[1]}
    if kind == "lit":
        return set()
    if kind == "cmp":
        return _columns(tree[2]) | _columns(tree[3])
    if kind in ("in", "null"):
        return _columns(tree[1])
    if kind == "not":
        return _columns(tree[1])
    return set().union(*(_columns(part) for part in tree[1]))


def _text(tree: tuple) -> str:
    kind = tree[0]
    if kind == "col":
        return f"`{tree[1]}`"
    if kind == "lit":
        return repr(tree[1])
    if kind == "cmp":
        return f"{_text(tree[2])} {tree[1]} {_text(tree[3])}"
    if kind == "in":
        return f"{_text(tree[1])} {'not in' if tree[3] else 'in'} {tree[2]!r}"
    if kind == "null":
        return f"{_text(tree[1])}.{'isnull' if tree[2] else 'notnull'}()"
    if kind == "not":
        return f"not ({_text(tree[1])})"
    return "(" + f" {kind} ".join(_text(part) for part in tree[1]) + ")"


def _values(operand: tuple, columns: Mapping[str, Sequence[Any]], count: int) -> Sequence[Any]:
    return columns[operand[1]] if operand[0] == "col" else [operand[1]] * count


def _masker(tree: tuple) -> _Mask:
    kind = tree[0]
    if kind == "cmp":
        op, left, right = tree[1], tree[2], tree[3]

        def compare(columns: Mapping[str, Sequence[Any]], count: int) -> list[bool]:
            return [_compare(op, a, b) for a, b in zip(_values(left, columns, count), _values(right, columns, count), strict=True)]
        return compare
    if kind == "in":
        operand, members, negated = tree[1], tree[2], tree[3]

        def member(columns: Mapping[str, Sequence[Any]], count: int) -> list[bool]:
            return [_member(v, members) != negated for v in _values(operand, columns, count)]
        return member
    if kind == "null":
        operand, is_null = tree[1], tree[2]
        return lambda columns, count: [_null(v) == is_null for v in _values(operand, columns, count)]
    if kind == "not":
        inner = _masker(tree[1])
        return lambda columns, count: [not keep for keep in inner(columns, count)]
    parts = [_masker(part) for part in tree[1]]
    combine = all if kind == "and" else any
    return lambda columns, count: [combine(keeps) for keeps in zip(*(p(columns, count) for p in parts), strict=True)]
