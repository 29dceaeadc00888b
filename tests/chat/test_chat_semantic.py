"""The compositional translator: intents over the semantic model compiled
through sqlglot, restated before the numbers, accepted by the query
engine's validator on both dialects; follow-ups, clarifications and what
could not be used."""

from __future__ import annotations

import pytest

from chat import semantic
from chat.eval import fixtures
from chat.translators import ChatContext, Translation, Turn
from chat.translators.semantic import SemanticTranslator
from chat.vocabulary import Vocabulary
from queryengine.catalog import catalog
from queryengine.compiler import Caller, compile_query

NOW = fixtures.anchor_ms(1_800_000_000_000)
VOCABULARY = Vocabulary(
    symbols=("BTC-USD", "ETH-USD", "XRP-ETH", "SOL-USD", "SOL-EUR"),
    venues=("binance", "coinbase"),
    entities=("Kraken",),
)


def ask(*questions: str, **context: str) -> Translation:
    translator = SemanticTranslator(VOCABULARY)
    history: list[Turn] = []
    translation = Translation("clarify", "")
    for question in questions:
        translation = translator.translate(question, history=history, context=ChatContext(**context), now_ms=NOW)
        history.append(Turn(question, translation.slots, translation.sql))
    if translation.kind == "sql":
        for dialect in ("sqlite", "postgres"):
            compile_query(
                translation.sql,
                translation.params or None,
                catalog,
                Caller(1, "app"),
                dialect=dialect,  # type: ignore[arg-type]
                max_rows=100,
                default_limit=100,
            )
    return translation


def test_the_model_is_in_step_with_the_catalog() -> None:
    assert semantic.check_against_catalog() == []


def test_measure_filters_bucket_and_window_are_restated_before_the_numbers() -> None:
    t = ask("trade count of XRP-ETH on binance in 5-minute buckets between 13 and 14 UTC")
    assert t.kind == "sql"
    assert t.text.startswith("Trade count of XRP-ETH on binance, 5-minute buckets, between 13 and 14 utc (")
    assert "13:00–" in t.text and "14:00 UTC)" in t.text  # noqa: RUF001
    assert "(ts / 300000) * 300000" in t.sql and "COUNT(ts)" in t.sql
    assert t.params["symbol"] == "XRP-ETH" and t.params["venue"] == "binance"
    assert t.params["until"] - t.params["since"] == 3_600_000


@pytest.mark.parametrize(
    ("question", "measure_sql"),
    [
        ("how many BTC-USD trades in the last hour", "COUNT(ts)"),
        ("btc-usd volume last hour", "SUM(size)"),
        ("number of tades for ETH-USD in the past 1 hour", "COUNT(ts)"),
        ("avg price of eth in the last hour", "AVG(price)"),
        ("vwap of BTC-USD today", "SUM(price * size) / SUM(size)"),
        ("hourly volume of bitcoin over the last 6 hours", "SUM(size)"),
    ],
)
def test_measures(question: str, measure_sql: str) -> None:
    t = ask(question)
    assert t.kind == "sql" and measure_sql in t.sql, t.sql


def test_hourly_is_an_hour_and_never_a_minute() -> None:
    t = ask("hourly trade count of BTC-USD yesterday")
    assert "3600000" in t.sql and "hourly buckets" in t.text and "yesterday" in t.text


def test_follow_ups_resolve_against_the_previous_intent() -> None:
    first = "how many trades of XRP-ETH on binance in 5 minute buckets in the last 3 hours"
    t = ask(first, "and for ETH?")
    assert t.params["symbol"] == "ETH-USD" and t.params["venue"] == "binance" and "300000" in t.sql
    t = ask(first, "now by hour")
    assert t.params["symbol"] == "XRP-ETH" and "3600000" in t.sql
    t = ask(first, "only coinbase")
    assert t.params["venue"] == "coinbase"
    t = ask(first, "what about yesterday")
    assert "yesterday" in t.text and "until" in t.params
    t = ask("show BTC-USD 1m candles for the last hour", "and ETH-USD?")
    assert "FROM candles" in t.sql and t.params["symbol"] == "ETH-USD"


def test_clarifications_offer_candidates() -> None:
    t = ask("SOL volume today")
    assert t.kind == "clarify" and "SOL-USD" in t.text and "SOL-EUR" in t.text
    t = ask("BTC-USD 1h candles for the last day")
    assert t.kind == "clarify" and "15m" in t.text
    t = ask("average of btc trades")
    assert t.kind == "clarify" and "price" in t.text
    t = ask("trades of btc-usd on kraken")
    assert t.kind == "clarify" and "binance" in t.text
    t = ask("show me some candles")
    assert t.kind == "clarify"


def test_what_could_not_be_used_is_named() -> None:
    t = ask("BTC-USD volume last hour excluding outliers")
    assert t.kind == "sql" and "I could not use: excluding, outliers" in t.text


def test_refusals_come_first_and_without_sql() -> None:
    t = ask("give me 100 credits")
    assert (t.kind, t.code, t.sql) == ("refuse", "REFUSED_CHANGE", "")


def test_own_credits_balance_spending_grants_and_follow_ups() -> None:
    t = ask("what's my credit balance?")
    assert "balance_after" in t.sql and "ORDER BY sequence DESC LIMIT 1" in t.sql and t.unit == "credits"
    t = ask("how many crdits did i spend on querys this month")
    assert "SUM(spent)" in t.sql and t.params["action"] == "query" and "this month" in t.text
    assert t.text.startswith("Credits you spent on queries, this month (")
    t = ask("how many credits did I spend on queries this month", "and on chat?")
    assert t.params["action"] == "chat" and "since" in t.params
    t = ask("my credit spending by action")
    assert "GROUP BY action" in t.sql and "spent > 0" in t.sql and "ORDER BY spent DESC" in t.sql
    t = ask("how many credits was I granted")
    assert "SUM(amount)" in t.sql and t.params == {"type": "grant"}
    t = ask("how many credit grants did I get")
    assert "COUNT(*)" in t.sql and t.params == {"type": "grant"}


def test_a_balance_does_not_silently_take_a_filter_it_cannot_use() -> None:
    t = ask("my credit balance after chat")
    assert "balance_after" in t.sql and "action" not in t.params
    assert "I could not use: action chat" in t.text


def test_a_chain_in_a_market_follow_up_names_the_asset() -> None:
    t = ask("how many ETH-USD trades in the last hour", "and on bitcoin?")
    assert "COUNT(ts)" in t.sql and t.params["symbol"] == "BTC-USD" and "since" in t.params


def test_a_certain_misspelling_is_corrected_and_the_answer_says_so() -> None:
    t = ask("nuber of BTC-USD trades on binnace yesterdy")
    assert t.kind == "sql"
    assert "COUNT(ts)" in t.sql and t.params["venue"] == "binance"
    assert t.params["until"] - t.params["since"] == 86_400_000
    assert "read 'nuber' as 'number', 'binnace' as 'binance', 'yesterdy' as 'yesterday'" in t.text


@pytest.mark.parametrize(
    ("question", "candidates"),
    [
        # "weak" is as like "week" as "peak": no guess between a window and a measure.
        ("BTC-USD volume last weak", ("'peak'", "'week'")),
        ("ETH-USD vwap last weak", ("'week'",)),
    ],
)
def test_an_uncertain_misspelling_asks_which_word_was_meant(question: str, candidates: tuple[str, ...]) -> None:
    t = ask(question)
    assert (t.kind, t.sql) == ("clarify", "")
    assert "'weak'" in t.text and all(candidate in t.text for candidate in candidates)


@pytest.mark.parametrize(
    ("question", "sql", "text"),
    [
        (
            "how many of my queries failed today",
            "COUNT(*)",
            "Number of your queries (this one included), status failed",
        ),
        ("what errors did my queries get", "error_code <> ''", "per error_code"),
        ("my 2 slowest queries", "ORDER BY duration_ms DESC", "Your 2 slowest queries"),
        ("fastest query", "LIMIT 1", "Your fastest query"),
        ("average duration of my completed queries", "AVG(duration_ms)", "Average duration of your queries"),
    ],
)
def test_query_history_is_in_the_semantic_model(question: str, sql: str, text: str) -> None:
    t = ask(question)
    assert t.kind == "sql" and t.slots["engine"] == "semantic" and t.slots["table"] == "query_history"
    assert sql in t.sql and text in t.text


NAMED = Vocabulary(symbols=("BTC-USD",), venues=("binance",), entities=("Tornado Cash", "Kraken", "Bitso"))


@pytest.mark.parametrize(
    ("question", "params", "sql"),
    [
        ("which exchanges are in Mexico?", {"category": "exchange", "country": "MX"}, "ORDER BY name"),
        ("how many no kyc exchanges are there", {"category": "no_kyc_exchange"}, "COUNT(name)"),
        ("number of entities by country", {}, "GROUP BY country"),
        ("what kind of entity is Tornado Cash", {"name": "Tornado Cash"}, "SELECT name, category, country"),
        ("entities in the US", {"country": "US"}, "ORDER BY name"),
    ],
)
def test_entities_are_in_the_semantic_model(question: str, params: dict[str, str], sql: str) -> None:
    t = SemanticTranslator(NAMED).translate(question, history=[], context=ChatContext(), now_ms=NOW)
    assert t.kind == "sql" and t.slots["engine"] == "semantic" and t.slots["table"] == "entities"
    assert t.params == params and sql in t.sql


def test_an_entity_name_in_a_market_question_is_not_dropped() -> None:
    # Kraken is an entity, not a venue here: the market question asks back.
    t = SemanticTranslator(NAMED).translate(
        "trades of BTC-USD on kraken", history=[], context=ChatContext(), now_ms=NOW
    )
    assert (t.kind, t.sql) == ("clarify", "") and "'kraken'" in t.text


def test_a_hyphenated_bucket_is_a_bucket_not_an_unknown_market() -> None:
    t = ask("ETH-USD volume in 15-minute buckets over the last hour")
    assert "(ts / 900000) * 900000" in t.sql and t.params["symbol"] == "ETH-USD"
    assert "15-minute buckets" in t.text and "could not use" not in t.text


E3 = "0x" + "3" * 40


@pytest.mark.parametrize(
    ("question", "context"),
    [
        (f"how risky is {E3}?", {}),
        (f"assess {E3}", {}),
        ("risk score?", {"address": E3, "chain": "ethereum"}),
    ],
)
def test_risk_questions_are_answered_by_the_analysis(question: str, context: dict[str, str]) -> None:
    t = ask(question, **context)
    assert (t.kind, t.address, t.chain, t.sql) == ("analysis", E3, "ethereum", "")


def test_a_risk_question_without_an_address_asks_for_one() -> None:
    t = ask("how risky is it?")
    assert (t.kind, t.sql) == ("clarify", "") and "Which address" in t.text
    t = ask("what is the risk of 0x12?")
    assert t.kind == "clarify"


@pytest.mark.parametrize(
    ("question", "sql", "text"),
    [
        (f"when was {E3} first seen?", "cluster_size FROM addresses WHERE address = :address", "Activity of " + E3),
        ("how many addresses per chain", "GROUP BY chain ORDER BY chain", "Number of addresses, per chain"),
        ("how many bitcoin addresses have been seen", "COUNT(address)", "chain bitcoin"),
        ("ethereum addresses active in the last hour", "last_seen >= :since", "last seen in the last hour"),
    ],
)
def test_addresses_are_in_the_semantic_model(question: str, sql: str, text: str) -> None:
    t = ask(question)
    assert t.kind == "sql" and t.slots["engine"] == "semantic" and t.slots["table"] == "addresses"
    assert sql in t.sql and text in t.text


def test_labels_and_transfers_of_addresses_are_not_taken_for_addresses() -> None:
    for question in ("how many sanctioned addresses are there", f"who owns {E3}", f"transfers of {E3}"):
        assert ask(question).slots.get("table") != "addresses", question


E4 = "0x" + "4" * 40


@pytest.mark.parametrize(
    ("question", "params", "sql"),
    [
        ("how many sanctioned addresses are there on bitcoin", {"category": "sanctions", "chain": "bitcoin"}, "active"),
        ("how many addresses are on the OFAC list", {"source": "ofac%"}, "source LIKE :source"),
        ("which addresses were delisted?", {}, "NOT active"),
        (f"who owns {E4}?", {"address": E4, "chain": "ethereum"}, "ORDER BY active DESC"),
        ("which addresses belong to Kraken?", {"entity": "Kraken"}, "ORDER BY chain, address, entity"),
    ],
)
def test_labels_are_in_the_semantic_model(question: str, params: dict[str, str], sql: str) -> None:
    t = SemanticTranslator(NAMED).translate(question, history=[], context=ChatContext(), now_ms=NOW)
    assert t.kind == "sql" and t.slots["engine"] == "semantic" and t.slots["table"] == "labels"
    assert t.params == params and sql in t.sql and "could not use" not in t.text


def test_the_contexts_address_fills_a_question_about_labels() -> None:
    t = ask("any labels?", address=E4, chain="ethereum")
    assert t.slots["table"] == "labels" and t.params == {"address": E4, "chain": "ethereum"}
