"""Execution accuracy of a translator over the evaluation set.

A question counts as correct when the rows its statement returns (run
through the query engine as the fixture's user, like any chat turn) equal
the expected rows: in order unless the entry says ``"ordered": false``;
numbers equal to 9 significant digits (SQLite returns doubles where
PostgreSQL returns exact decimals), ``"*"`` matching any value (times of
rows the fixture writes at load time, generated ids). Expected
``{"clarify": true}`` wants a clarifying question and no SQL;
``{"analysis": ADDRESS}`` wants the compliance analysis of that address;
``{"refuse": CODE}`` wants a refusal with that code (``chat.refusals``)
and no SQL. ``{"sql": STATEMENT}`` is scored by execution: the expected
statement runs as the fixture's user too, and the rows must be equal.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from chat.eval.fixtures import Fixture
from chat.translators import ChatContext, Translation, Translator, Turn
from queryengine import interface as queries
from queryengine.interface import QueryRecord

QUESTIONS = Path(__file__).with_name("questions.json")


def load_questions(path: Path = QUESTIONS) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text(encoding="utf-8")))


@dataclass
class Outcome:
    question: dict[str, Any]
    correct: bool
    translation: Translation | None
    rows: list[list[Any]] | None = None
    error: str = ""
    ms: float = 0.0


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        return sum(o.correct for o in self.outcomes) / len(self.outcomes) if self.outcomes else 0.0

    def by_table(self) -> dict[str, tuple[int, int]]:
        totals: dict[str, tuple[int, int]] = {}
        for outcome in self.outcomes:
            table = outcome.question["table"]
            right, count = totals.get(table, (0, 0))
            totals[table] = (right + outcome.correct, count + 1)
        return totals

    def by_category(self, split: str | None = None) -> dict[str, tuple[int, int]]:
        """(right, count) per category, of one split ("dev", "heldout") or all."""
        totals: dict[str, tuple[int, int]] = {}
        for outcome in self.outcomes:
            if split is not None and outcome.question.get("split", "dev") != split:
                continue
            category = outcome.question.get("category", "lookup")
            right, count = totals.get(category, (0, 0))
            totals[category] = (right + outcome.correct, count + 1)
        return totals

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.correct]


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(Decimal(value))
        except (InvalidOperation, ValueError):
            return None
    return None


def same_value(actual: Any, expected: Any) -> bool:
    if expected == "*":
        return True
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(actual) == bool(expected) and actual is not None and expected is not None
    if expected is None or actual is None:
        return expected is None and actual is None
    left, right = _number(actual), _number(expected)
    if left is not None and right is not None and not isinstance(expected, str):
        return math.isclose(left, right, rel_tol=1e-9, abs_tol=1e-9)
    return str(actual) == str(expected)


def same_rows(actual: list[list[Any]], expected: list[list[Any]], ordered: bool) -> bool:
    if len(actual) != len(expected):
        return False
    if ordered:
        return all(
            len(a) == len(e) and all(same_value(x, y) for x, y in zip(a, e, strict=True))
            for a, e in zip(actual, expected, strict=True)
        )
    left = list(actual)
    for row in expected:
        match = next(
            (i for i, a in enumerate(left) if len(a) == len(row) and all(map(same_value, a, row))),
            None,
        )
        if match is None:
            return False
        left.pop(match)
    return True


def _history(translator: Translator, questions: list[str], context: ChatContext, now_ms: int) -> list[Turn]:
    turns: list[Turn] = []
    for text in questions:
        translation = translator.translate(text, history=list(turns), context=context, now_ms=now_ms)
        turns.append(Turn(question=text, slots=translation.slots, sql=translation.sql))
    return turns


def _rows(fixture: Fixture, sql: str, params: dict[str, Any] | None = None) -> list[list[Any]]:
    rows: list[list[Any]] = []

    def collect(chunk: list[list[Any]], schema: Any) -> None:
        rows.extend(chunk)

    queries.run_query(
        user_pk=fixture.user_pk,
        application_id=fixture.application_id,
        sql=sql,
        params=params or None,
        on_chunk=collect,
        reference="chat-eval",
    )
    return rows


def evaluate(translator: Translator, fixture: Fixture, questions: list[dict[str, Any]] | None = None) -> Report:
    report = Report()
    for question in questions if questions is not None else load_questions():
        text = fixture.substitute(question["question"])
        expected = fixture.substitute(question["expected"])
        context = ChatContext(**fixture.substitute(question.get("context") or {}))
        history = _history(translator, fixture.substitute(question.get("history") or []), context, fixture.anchor)
        if question["table"] == "query_history":
            # The evaluation's own queries are not part of the fixture.
            QueryRecord.objects.filter(user_id=fixture.user_pk).exclude(pk__in=fixture.query_ids).delete()
        if isinstance(expected, dict) and "sql" in expected:
            expected = _rows(fixture, expected["sql"], expected.get("params"))
        started = time.perf_counter()
        translation = translator.translate(text, history=history, context=context, now_ms=fixture.anchor)
        outcome = Outcome(question, False, translation)
        if isinstance(expected, dict) and expected.get("clarify"):
            outcome.correct = translation.kind == "clarify"
        elif isinstance(expected, dict) and "refuse" in expected:
            outcome.correct = translation.kind == "refuse" and translation.code == expected["refuse"]
        elif isinstance(expected, dict) and "analysis" in expected:
            outcome.correct = translation.kind == "analysis" and translation.address == expected["analysis"]
        elif translation.kind != "sql":
            pass
        else:
            try:
                outcome.rows = _rows(fixture, translation.sql, translation.params)
            except queries.QueryFailed as failure:
                outcome.error = f"{failure.code}: {failure.message}"
            else:
                outcome.correct = same_rows(outcome.rows, expected, question.get("ordered", True))
        if not outcome.correct and not outcome.error and translation.kind != "sql":
            outcome.error = f"{translation.kind}: {translation.text}"
        outcome.ms = (time.perf_counter() - started) * 1000
        report.outcomes.append(outcome)
    return report
