"""The evaluation runner: expected statements are run and their rows
compared, refusals are scored by their code, and accuracy is reported per
category of each split."""

from __future__ import annotations

import pytest

from chat.eval import fixtures, runner
from chat.translators import ChatContext, Translation, Turn


class Scripted:
    """A translator that answers from a table (the runner is under test)."""

    name = "scripted"

    def __init__(self, answers: dict[str, Translation]) -> None:
        self.answers = answers

    def translate(self, question: str, *, history: list[Turn], context: ChatContext, now_ms: int, **_: object):
        return self.answers[question]


def test_every_item_has_a_category_and_a_fixed_split() -> None:
    questions = runner.load_questions()
    assert len(questions) >= 400
    assert all(q["split"] in ("dev", "heldout") and q["category"] for q in questions)
    assert len({q["id"] for q in questions}) == len(questions)
    heldout = [q for q in questions if q["split"] == "heldout"]
    assert len(heldout) >= 100
    assert {q["category"] for q in heldout} >= {"aggregate", "time", "typo", "followup", "refuse", "clarify"}


@pytest.mark.django_db(transaction=True)
def test_expected_statements_run_and_refusals_are_scored_by_code() -> None:
    fixture = fixtures.load()
    count = "SELECT count(*) FROM trades WHERE symbol = 'BTC-USD' AND venue IS NOT NULL"

    def item(key: str, split: str, expected: dict[str, str], category: str) -> dict[str, object]:
        return {"id": key, "table": "t", "question": key, "expected": expected, "category": category, "split": split}

    questions = [
        item("a", "dev", {"sql": count}, "aggregate"),
        item("b", "heldout", {"sql": count}, "aggregate"),
        item("c", "heldout", {"refuse": "REFUSED_CHANGE"}, "refuse"),
        item("d", "heldout", {"refuse": "REFUSED_CHANGE"}, "refuse"),
    ]
    right = "SELECT count(ts) AS n FROM trades WHERE symbol = :symbol AND venue IS NOT NULL"
    wrong = "SELECT count(ts) AS n FROM trades WHERE symbol = :symbol AND venue = 'binance'"
    translator = Scripted(
        {
            "a": Translation("sql", "", sql=right, params={"symbol": "BTC-USD"}),
            "b": Translation("sql", "", sql=wrong, params={"symbol": "BTC-USD"}),
            "c": Translation("refuse", "", code="REFUSED_CHANGE"),
            "d": Translation("refuse", "", code="REFUSED_OUTSIDE"),
        }
    )
    report = runner.evaluate(translator, fixture, questions)  # type: ignore[arg-type]
    assert [o.correct for o in report.outcomes] == [True, False, True, False]
    assert report.by_category("dev") == {"aggregate": (1, 1)}
    assert report.by_category("heldout") == {"aggregate": (0, 1), "refuse": (1, 2)}
