"""Transfers in the semantic model: chain and asset, an address as sender,
receiver or either, amounts that add up only within one asset, rankings of
addresses and counterparties, follow-ups, and clarifying answers where the
question does not say enough; the statements run on the evaluation fixture
and give the rows of a statement written by hand."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest

from chat.eval import fixtures, runner
from chat.translators import ChatContext, Translation, Turn
from chat.translators.semantic import SemanticTranslator
from chat.vocabulary import Vocabulary
from tests.chat.test_chat_builtin import compiles

NOW = fixtures.anchor_ms(1_800_000_000_000)
VOCABULARY = Vocabulary(symbols=("BTC-USD", "ETH-USD"), venues=("binance", "coinbase"), entities=("Kraken",))
E1 = "0x" + "1" * 40
DAY = 86_400_000


def ask(*questions: str, vocabulary: Vocabulary | None = VOCABULARY, now_ms: int = NOW, **context: str) -> Translation:
    translator = SemanticTranslator(vocabulary)
    history: list[Turn] = []
    translation = Translation("clarify", "")
    for question in questions:
        translation = translator.translate(question, history=history, context=ChatContext(**context), now_ms=now_ms)
        history.append(Turn(question, translation.slots, translation.sql))
    if translation.kind == "sql":
        compiles(translation)  # accepted by the query engine on both dialects
    return translation


def test_the_phrase_matcher_is_gone() -> None:
    assert importlib.util.find_spec("chat.translators.builtin") is None


@pytest.mark.parametrize(
    ("question", "params", "sql", "text"),
    [
        ("how many transfers on bitcoin", {"chain": "bitcoin"}, "COUNT(ts)", "Number of transfers, chain bitcoin"),
        (
            f"how many transfers did {E1} receive",
            {"chain": "ethereum", "to_address": E1},
            "to_address = :to_address",
            f"received by {E1}",
        ),
        (
            f"how many transfers did {E1} make",
            {"chain": "ethereum", "address": E1},
            "(from_address = :address OR to_address = :address)",
            f"sent or received by {E1}",
        ),
        ("number of eth chain transfers", {"chain": "ethereum"}, "COUNT(ts)", "chain ethereum"),
        ("average USDC transfer on ethereum", {"asset": "USDC", "chain": "ethereum"}, "AVG(amount)", "Average amount"),
        ("USDT transfers per day", {"asset": "USDT"}, "(ts / 86400000) * 86400000", "daily buckets"),
    ],
)
def test_filters_roles_and_measures_are_read_and_restated(
    question: str, params: dict[str, str], sql: str, text: str
) -> None:
    t = ask(question)
    assert t.kind == "sql" and t.slots["table"] == "transfers", t.text
    assert t.params == params and sql in t.sql and text in t.text


def test_amounts_of_different_assets_are_never_added_together() -> None:
    t = ask("total volume of ethereum transfers")
    assert "GROUP BY asset" in t.sql and "per asset" in t.text and t.shape == "rows"
    one = ask("total USDT volume on ethereum")
    assert "GROUP BY" not in one.sql and one.params["asset"] == "USDT" and one.unit == "USDT"


def test_rankings_of_addresses_take_the_native_asset_of_the_chain_or_ask_for_it() -> None:
    t = ask("top 5 bitcoin addresses by incoming volume")
    assert "GROUP BY to_address" in t.sql and t.params == {"asset": "BTC", "chain": "bitcoin"}
    assert "ORDER BY volume DESC, transfers DESC, to_address LIMIT 5" in t.sql
    ranked = ask("which ethereum addresses sent the most ETH")
    assert "NOT from_address IS NULL" in ranked.sql and ranked.sql.endswith("LIMIT 10")  # the first few, never all
    unsure = ask("top receivers by volume")
    assert unsure.kind == "clarify" and "which chain" in unsure.text and not unsure.sql
    largest = ask("largest transfers")
    assert largest.kind == "clarify" and "asset" in largest.text


def test_distinct_senders_and_receivers_are_counted() -> None:
    t = ask("how many unique senders on ethereum")
    assert "COUNT(DISTINCT from_address)" in t.sql and t.params == {"chain": "ethereum"}
    ranked = ask("top ethereum senders of ETH")
    assert "GROUP BY from_address" in ranked.sql and "DISTINCT" not in ranked.sql


def test_counterparties_of_an_address_are_ranked() -> None:
    t = ask(f"who did {E1} send the most USDT to?")
    assert "GROUP BY to_address" in t.sql and t.params["from_address"] == E1 and t.params["asset"] == "USDT"


def test_unclear_transfer_questions_get_a_clarifying_question() -> None:
    for question in ("show me transfers", "how many transfers did it send?", "hello there", "what can you do"):
        t = ask(question)
        assert t.kind == "clarify" and "?" in t.text and not t.sql, question


def test_the_context_address_fills_it() -> None:
    t = ask("how many transfers did it send?", address=E1, chain="ethereum")
    assert t.params == {"chain": "ethereum", "from_address": E1}


def test_follow_ups_replace_chain_window_and_grouping() -> None:
    bitcoin = ask("top 10 ethereum addresses by outgoing volume last week", "and on bitcoin?")
    assert bitcoin.params["chain"] == "bitcoin" and bitcoin.params["asset"] == "BTC" and "since" in bitcoin.params
    yesterday = ask("how many USDT transfers on ethereum", "what about yesterday")
    assert yesterday.params["asset"] == "USDT" and yesterday.params["until"] - yesterday.params["since"] == DAY
    grouped = ask("how many transfers on ethereum", "now per asset")
    assert "GROUP BY asset" in grouped.sql and grouped.params == {"chain": "ethereum"}
    market = ask("how many ETH-USD trades in the last hour", "and on bitcoin?")
    assert market.slots["table"] == "trades" and market.params["symbol"] == "BTC-USD"


def test_a_follow_up_naming_no_table_is_read_with_the_words_of_transfers() -> None:
    only = ask("how many transfers on ethereum", "only USDT")
    assert only.params == {"asset": "USDT", "chain": "ethereum"} and "COUNT(ts)" in only.sql
    received = ask(f"how many transfers did {E1} send", "and received?")
    assert received.params == {"chain": "ethereum", "to_address": E1} and "could not use" not in received.text


def test_a_direction_without_an_address_ranks_the_other_side() -> None:
    first = "top 10 ethereum addresses by outgoing volume last week"
    receivers = ask(first, "only the incoming ones")
    assert "GROUP BY to_address" in receivers.sql and "could not use" not in receivers.text
    usdc = ask(first, "now by receiver", "and for USDC?")
    assert "GROUP BY to_address" in usdc.sql and usdc.params["asset"] == "USDC" and "since" in usdc.params


def test_a_greeting_is_not_a_follow_up_and_does_not_break_the_conversation() -> None:
    hello = ask("how many transfers on ethereum", "hello")
    assert hello.kind == "clarify" and not hello.sql and not hello.slots
    later = ask("how many transfers on ethereum", "hello", "yesterday?")
    assert later.params["chain"] == "ethereum" and later.params["until"] - later.params["since"] == DAY


def test_a_second_address_is_the_other_party_or_reported() -> None:
    e2 = "0x" + "2" * 40
    t = ask(f"transfers from {e2} to {E1}")
    assert t.params == {"chain": "ethereum", "from_address": e2, "to_address": E1}
    assert f"sent by {e2}, received by {E1}" in t.text
    t = ask(f"how much ETH did {E1} send to {e2}")
    assert t.params["from_address"] == E1 and t.params["to_address"] == e2 and "SUM(amount)" in t.sql
    between = ask(f"how many transfers between {E1} and {e2}")
    assert "(from_address = :address AND to_address = :counterparty) OR" in between.sql
    assert between.params["counterparty"] == e2 and f"between {E1} and {e2}" in between.text
    labels = ask(f"labels of {E1} and {e2}")
    assert labels.params["address"] == E1 and f"I could not use: {e2}" in labels.text


def test_comparisons_with_a_number_filter_the_size_column_or_are_reported() -> None:
    t = ask("how many transfers over 100 ETH")
    assert "amount > :bound0" in t.sql and t.params == {"asset": "ETH", "bound0": 100}
    assert "amount over 100" in t.text
    trades = ask("BTC-USD trades of at least 2.5 BTC")
    assert "size >= :bound0" in trades.sql and trades.params["bound0"] == 2.5
    priced = ask("BTC-USD trades with a price above 100000")
    assert "price > :bound0" in priced.sql and "LIMIT 10" in priced.sql and "price over 100000" in priced.text
    unsure = ask("BTC-USD trades above 100000")
    assert unsure.kind == "clarify" and "price or a size" in unsure.text and not unsure.sql
    queries = ask("how many of my queries took longer than 500 ms")
    assert "duration_ms > :bound0" in queries.sql and "could not use" not in queries.text
    entities = ask("how many entities over 5")
    assert "bound0" not in entities.sql and "I could not use: over 5" in entities.text
    window = ask("how many ETH-USD trades over the last 24 hours")
    assert "bound0" not in (window.params or {}) and window.params["since"] == NOW - DAY


def test_parts_a_table_has_no_column_for_are_named_not_compiled() -> None:
    market = ask("how many of my queries failed on BTC-USD")
    assert "symbol" not in market.sql and "I could not use: BTC-USD" in market.text
    entities = ask("the 2 largest entities")
    assert entities.kind == "sql" and "DESC, DESC" not in entities.sql and "I could not use: largest" in entities.text


def _rows(fixture: fixtures.Fixture, sql: str, params: dict[str, Any]) -> list[list[Any]]:
    return runner._rows(fixture, sql, params)


@pytest.mark.django_db(transaction=True)
def test_statements_give_the_rows_of_statements_written_by_hand() -> None:
    fixture = fixtures.load()
    e1, e2 = fixture.addresses["E1"], fixture.addresses["E2"]
    cases: list[tuple[str, str, dict[str, Any]]] = [
        (
            f"how much USDT did {e1} send",
            "SELECT sum(amount) FROM transfers WHERE asset = 'USDT' AND from_address = :a",
            {"a": e1},
        ),
        (
            f"how many transfers did {e2} receive in the last 7 days",
            "SELECT count(*) FROM transfers WHERE to_address = :a AND ts >= :since",
            {"a": e2, "since": fixture.anchor - 7 * DAY},
        ),
        (
            "how many ethereum transfers of more than 1 ETH",
            "SELECT count(*) FROM transfers WHERE chain = 'ethereum' AND asset = 'ETH' AND amount > 1",
            {},
        ),
        (
            f"how many transfers between {e1} and {e2}",
            (
                "SELECT count(*) FROM transfers WHERE (from_address = :a AND to_address = :b) "
                "OR (from_address = :b AND to_address = :a)"
            ),
            {"a": e1, "b": e2},
        ),
        (
            "number of distinct receivers of ETH on ethereum",
            "SELECT count(DISTINCT to_address) FROM transfers WHERE chain = 'ethereum' AND asset = 'ETH'",
            {},
        ),
        (
            "how many bitcoin transfers per asset",
            "SELECT asset, count(*) FROM transfers WHERE chain = 'bitcoin' GROUP BY asset ORDER BY asset",
            {},
        ),
        (
            "which ethereum addresses received the most ETH",
            (
                "SELECT to_address, sum(amount) AS v, count(*) AS n FROM transfers WHERE chain = 'ethereum' "
                "AND asset = 'ETH' GROUP BY to_address ORDER BY v DESC, n DESC, to_address"
            ),
            {},
        ),
    ]
    for question, sql, params in cases:
        t = ask(question, vocabulary=None, now_ms=fixture.anchor)
        assert t.kind == "sql", (question, t.text)
        expected = _rows(fixture, sql, params)
        assert expected, question  # the fixture has rows for each
        assert runner.same_rows(_rows(fixture, t.sql, t.params or {}), expected, ordered=True), (question, t.sql)
