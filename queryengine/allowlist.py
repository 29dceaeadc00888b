"""What user SQL may contain: syntax nodes, their clauses, functions, types.

Everything is an allowlist keyed by the exact sqlglot node class: a node
class that is not listed, or a listed node using a clause that is not
listed for it, is refused. New sqlglot versions that grow new node types or
clauses therefore fail closed.
"""

from __future__ import annotations

from sqlglot import exp

_BINARY = frozenset({"this", "expression"})
_UNARY = frozenset({"this"})
_NEGATABLE = frozenset({"this", "expression", "negate"})
_NONE: frozenset[str] = frozenset()

# Node class -> clauses (arg keys) it may use.
SYNTAX: dict[type[exp.Expr], frozenset[str]] = {
    exp.Select: frozenset(
        {"with_", "expressions", "distinct", "from_", "joins", "where", "group", "having", "windows", "order"}
        | {"limit", "offset"}
    ),
    exp.Union: frozenset({"with_", "this", "expression", "distinct", "order", "limit", "offset"}),
    exp.Intersect: frozenset({"with_", "this", "expression", "distinct", "order", "limit", "offset"}),
    exp.Except: frozenset({"with_", "this", "expression", "distinct", "order", "limit", "offset"}),
    exp.Subquery: frozenset({"this", "alias"}),
    exp.With: frozenset({"expressions"}),
    exp.CTE: frozenset({"this", "alias"}),
    exp.TableAlias: frozenset({"this", "columns"}),
    exp.Table: frozenset({"this", "alias"}),
    exp.From: _UNARY,
    exp.Join: frozenset({"this", "on", "using", "side", "kind", "method"}),
    exp.Where: _UNARY,
    exp.Having: _UNARY,
    exp.Group: frozenset({"expressions"}),
    exp.Order: frozenset({"expressions"}),
    exp.Ordered: frozenset({"this", "desc", "nulls_first"}),
    exp.Limit: frozenset({"expression"}),
    exp.Offset: frozenset({"expression"}),
    exp.Distinct: frozenset({"expressions"}),
    exp.Alias: frozenset({"this", "alias"}),
    exp.Column: frozenset({"this", "table"}),
    exp.Identifier: frozenset({"this", "quoted"}),
    exp.Star: _NONE,
    exp.Literal: frozenset({"this", "is_string"}),
    exp.Boolean: _UNARY,
    exp.Null: _NONE,
    exp.Placeholder: frozenset({"this"}),
    exp.Paren: _UNARY,
    exp.Not: _UNARY,
    exp.Neg: _UNARY,
    exp.And: _BINARY,
    exp.Or: _BINARY,
    exp.EQ: _BINARY,
    exp.NEQ: _BINARY,
    exp.GT: _BINARY,
    exp.GTE: _BINARY,
    exp.LT: _BINARY,
    exp.LTE: _BINARY,
    exp.NullSafeEQ: _BINARY,
    exp.NullSafeNEQ: _BINARY,
    exp.Is: _NEGATABLE,
    exp.Add: _BINARY,
    exp.Sub: _BINARY,
    exp.Mul: _BINARY,
    exp.Div: frozenset({"this", "expression", "typed", "safe"}),
    exp.Mod: _BINARY,
    exp.DPipe: frozenset({"this", "expression", "safe"}),
    exp.Like: _NEGATABLE,
    exp.ILike: _NEGATABLE,
    exp.Escape: _BINARY,
    exp.Between: frozenset({"this", "low", "high"}),
    exp.In: frozenset({"this", "expressions", "query"}),
    exp.Exists: _UNARY,
    exp.Case: frozenset({"this", "ifs", "default"}),
    exp.If: frozenset({"this", "true", "false"}),
    exp.Cast: frozenset({"this", "to"}),
    exp.DataType: frozenset({"this", "expressions"}),
    exp.DataTypeParam: _UNARY,
    exp.Window: frozenset({"this", "partition_by", "order", "spec", "alias", "over"}),
    exp.WindowSpec: frozenset({"kind", "start", "start_side", "end", "end_side"}),
    exp.Filter: _BINARY,
    exp.Interval: frozenset({"this", "unit"}),
    # Only as the unit of date_trunc/extract/interval (checked in the compiler).
    exp.Var: _UNARY,
}

# Function class -> (name shown to users, arguments it may use).
FUNCTIONS: dict[type[exp.Func], tuple[str, frozenset[str]]] = {
    exp.Count: ("count", frozenset({"this", "big_int"})),
    exp.Sum: ("sum", _UNARY),
    exp.Avg: ("avg", _UNARY),
    exp.Min: ("min", _UNARY),
    exp.Max: ("max", _UNARY),
    exp.Abs: ("abs", _UNARY),
    exp.Round: ("round", frozenset({"this", "decimals"})),
    exp.Sign: ("sign", _UNARY),
    exp.Floor: ("floor", _UNARY),
    exp.Ceil: ("ceil", _UNARY),
    exp.Pow: ("power", _BINARY),
    exp.Sqrt: ("sqrt", _UNARY),
    exp.Ln: ("ln", _UNARY),
    exp.Coalesce: ("coalesce", frozenset({"this", "expressions", "is_nvl", "is_null"})),
    exp.Nullif: ("nullif", _BINARY),
    exp.Greatest: ("greatest", frozenset({"this", "expressions", "ignore_nulls"})),
    exp.Least: ("least", frozenset({"this", "expressions", "ignore_nulls"})),
    exp.Lower: ("lower", _UNARY),
    exp.Upper: ("upper", _UNARY),
    exp.Length: ("length", _UNARY),
    exp.Substring: ("substr", frozenset({"this", "start", "length"})),
    exp.Trim: ("trim", frozenset({"this", "expression", "position"})),
    exp.Replace: ("replace", frozenset({"this", "expression", "replacement"})),
    exp.StrPosition: ("strpos", frozenset({"this", "substr"})),
    exp.Date: ("date", _UNARY),
    exp.TimestampTrunc: ("date_trunc", frozenset({"this", "unit"})),
    exp.DateTrunc: ("date_trunc", frozenset({"this", "unit"})),
    exp.Extract: ("extract", _BINARY),
    exp.CurrentTimestamp: ("now", _NONE),
    exp.CurrentDate: ("current_date", _NONE),
    exp.RowNumber: ("row_number", _NONE),
    exp.Rank: ("rank", _NONE),
    exp.DenseRank: ("dense_rank", _NONE),
    exp.Lag: ("lag", frozenset({"this", "offset", "default"})),
    exp.Lead: ("lead", frozenset({"this", "offset", "default"})),
    exp.FirstValue: ("first_value", _UNARY),
    exp.LastValue: ("last_value", _UNARY),
    exp.Ntile: ("ntile", _UNARY),
}

WINDOW_ONLY = frozenset({exp.RowNumber, exp.Rank, exp.DenseRank, exp.Lag, exp.Lead, exp.FirstValue, exp.LastValue})
AGGREGATES = frozenset({exp.Count, exp.Sum, exp.Avg, exp.Min, exp.Max})

# CAST targets (sqlglot type names); never reg* or other catalog-lookup types.
CAST_TYPES = frozenset(
    {
        "SMALLINT",
        "INT",
        "BIGINT",
        "TEXT",
        "VARCHAR",
        "CHAR",
        "DOUBLE",
        "FLOAT",
        "DECIMAL",
        "BOOLEAN",
        "DATE",
        "TIMESTAMP",
        "TIMESTAMPTZ",
    }
)

TRUNC_UNITS = frozenset({"SECOND", "MINUTE", "HOUR", "DAY", "WEEK", "MONTH", "YEAR"})
EXTRACT_FIELDS = frozenset({"YEAR", "MONTH", "DAY", "HOUR", "MINUTE", "SECOND", "DOW", "DOY", "EPOCH"})
INTERVAL_UNITS = {
    "SECOND": "seconds",
    "SECONDS": "seconds",
    "MINUTE": "minutes",
    "MINUTES": "minutes",
    "HOUR": "hours",
    "HOURS": "hours",
    "DAY": "days",
    "DAYS": "days",
    "WEEK": "weeks",
    "WEEKS": "weeks",
    "MONTH": "months",
    "MONTHS": "months",
    "YEAR": "years",
    "YEARS": "years",
}

JOIN_SIDES = frozenset({"", "LEFT", "RIGHT", "FULL"})
JOIN_KINDS = frozenset({"", "INNER", "OUTER", "CROSS"})
JOIN_METHODS = frozenset({"", "NATURAL"})

# Functions the compiled SQL may call on SQLite (the authorizer's list):
# what the allowlisted functions above are generated as, plus LIKE.
SQLITE_FUNCTIONS = frozenset(
    {
        "count",
        "sum",
        "avg",
        "min",
        "max",
        "abs",
        "round",
        "sign",
        "floor",
        "ceil",
        "ceiling",
        "power",
        "pow",
        "sqrt",
        "ln",
        "coalesce",
        "ifnull",
        "nullif",
        "iif",
        "lower",
        "upper",
        "length",
        "substr",
        "substring",
        "trim",
        "ltrim",
        "rtrim",
        "replace",
        "instr",
        "like",
        "date",
        "datetime",
        "strftime",
        "julianday",
        # now() and current_date compile to these SQLite keywords, which the
        # authorizer sees as function calls.
        "current_timestamp",
        "current_date",
        "row_number",
        "rank",
        "dense_rank",
        "lag",
        "lead",
        "first_value",
        "last_value",
        "ntile",
    }
)


def function_names() -> list[str]:
    """The allowlisted function names, for documentation."""
    return sorted({name for name, _ in FUNCTIONS.values()} | {"cast"})
