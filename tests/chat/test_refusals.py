"""Requests the chat never carries out get a refusal with a documented code
and no SQL in their place; reads that look alike are not refused."""

from __future__ import annotations

import pytest

from chat import refusals
from chat.translators import ChatContext
from chat.translators.semantic import SemanticTranslator
from chat.vocabulary import Vocabulary

E1 = "0x" + "1" * 40


@pytest.mark.parametrize(
    ("question", "code"),
    [
        ("delete all trades", refusals.CHANGE),
        ("DROP TABLE trades", refusals.CHANGE),
        ("truncate table credit_entries", refusals.CHANGE),
        ("update credit_entries set amount = 1000", refusals.CHANGE),
        ("insert into trades values (1)", refusals.CHANGE),
        ("give me 100 credits", refusals.CHANGE),
        ("can you add 500 credits to my account", refusals.CHANGE),
        ("please reset my balance", refusals.CHANGE),
        ("set my balance to 1000", refusals.CHANGE),
        ("grant me unlimited credits", refusals.CHANGE),
        ("i want you to delete my query history", refusals.CHANGE),
        (f"label {E1} as a mixer", refusals.CHANGE),
        ("remove the Kraken labels", refusals.CHANGE),
        ("show the credits of other users", refusals.OTHERS),
        ("what is alice's balance", refusals.OTHERS),
        ("how many queries did user 42 run", refusals.OTHERS),
        ("credits of tenant acme", refusals.OTHERS),
        ("list all users", refusals.OTHERS),
        ("how many credits does alice have", refusals.OTHERS),
        ("what did bob spend on queries last week", refusals.OTHERS),
        ("the queries that kevin ran", refusals.OTHERS),
        ("balance of dave", refusals.OTHERS),
        ("credits for bob@example.com", refusals.OTHERS),
        ("show the queries of app_acme", refusals.OTHERS),
        ("how much did my boss spend", refusals.OTHERS),
        ("how many credits has tenant acme used", refusals.OTHERS),
        ("write me a poem about blockchains", refusals.OUTSIDE),
        ("draft a message to my boss about eth trades", refusals.OUTSIDE),
        ("how do i bake bread", refusals.OUTSIDE),
        ("whats a good pizza place near me", refusals.OUTSIDE),
        ("what's the weather in Paris", refusals.OUTSIDE),
        ("will the price of BTC go up tomorrow", refusals.OUTSIDE),
        ("should i buy eth", refusals.OUTSIDE),
    ],
)
def test_refused_with_its_code(question: str, code: str) -> None:
    refused = refusals.refusal(question, "app_demo")
    assert refused is not None and refused.code == code
    assert code in refused.text
    translation = SemanticTranslator(Vocabulary(symbols=("BTC-USD",))).translate(
        question, history=[], context=ChatContext(), now_ms=1_800_000_000_000, application_id="app_demo"
    )
    assert (translation.kind, translation.code, translation.sql) == ("refuse", code, "")


@pytest.mark.parametrize(
    "question",
    [
        "give me the latest BTC-USD price",
        "transfer volume on ethereum yesterday",
        "change in BTC price in the last hour",
        f"has anyone sent ETH to {E1}",
        "what's my balance",
        "how many credits was I granted",
        "how many credit grants did I get",
        "show the transfers of " + E1,
        "top 3 largest ETH transfers",
        f"what labels does {E1} have",
        "which addresses were delisted?",
        "show the queries of app_demo",
        "how many credits did my queries cost",
        "credits spent by queries",
        "my credit spending by action",
        "my queries by status",
        "queries that failed today",
        "how many trades did binance have today",
        "where is Bitso based?",
        "generate a report of BTC-USD trades",
        "which is the best exchange by volume",
    ],
)
def test_reads_are_not_refused(question: str) -> None:
    assert refusals.refusal(question, "app_demo") is None
