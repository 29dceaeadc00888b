"""Deterministic fixture data for the chat evaluation.

Everything is placed relative to an anchor ``A``: noon UTC of the day the
fixture is loaded, so that calendar windows ("yesterday") and rolling ones
("the last hour") select the same rows whatever the time of day. Questions
are translated with ``now_ms = A``.

Placeholders in ``questions.json``: ``{E1}``…``{E6}`` (ethereum),
``{B1}``…``{B4}`` (bitcoin) and ``{A-<ms>}`` (the anchor minus that many ms,
as an integer when it is a whole value).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from accounts.interface import get_or_create_user
from compliance.interface import (
    Address,
    Asset,
    Chain,
    GraphWriter,
    TransferKind,
    TransferRow,
    TxRow,
    delist_labels,
    encode_bitcoin_address,
    ensure_chain,
    get_or_create_address,
    get_or_create_entity,
    label_address,
)
from credits import interface as credits
from marketdata import interface as market
from marketdata.interface import TradeInput
from queryengine.interface import QueryRecord

HOUR = 3_600_000
DAY = 86_400_000
MINUTE = 60_000
WEI = 10**18
SATOSHI = 10**8
MICRO = 10**6

ETH_ADDRESSES = {f"E{i}": "0x" + str(i) * 40 for i in range(1, 7)}


def bitcoin_addresses() -> dict[str, str]:
    return {f"B{i}": encode_bitcoin_address("p2wpkh", bytes([i * 17]) * 20) for i in range(1, 5)}


def anchor_ms(now_ms: int | None = None) -> int:
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    return now - now % DAY + 12 * HOUR


# (venue, symbol, trade id, offset before A in ms, price, size, side)
TRADES = [
    ("binance", "BTC-USD", "b1", 30 * MINUTE, "100000", "0.5", "buy"),
    ("binance", "BTC-USD", "b2", 20 * MINUTE, "100200", "1", "sell"),
    ("binance", "BTC-USD", "b3", 10 * MINUTE, "100100", "0.25", "buy"),
    ("binance", "BTC-USD", "b4", 2 * HOUR, "99000", "2", "sell"),
    ("binance", "BTC-USD", "b5", 3 * DAY, "95000", "4", "buy"),
    ("coinbase", "BTC-USD", "c1", 25 * MINUTE, "100050", "0.75", "buy"),
    ("coinbase", "BTC-USD", "c2", 5 * MINUTE, "100300", "0.5", "sell"),
    ("coinbase", "BTC-USD", "c3", 26 * HOUR, "97000", "1", "buy"),
    ("binance", "ETH-USD", "e1", 40 * MINUTE, "3500", "10", "buy"),
    ("binance", "ETH-USD", "e2", 15 * MINUTE, "3510", "5", "sell"),
    ("binance", "ETH-USD", "e3", 50 * HOUR, "3300", "20", "sell"),
    ("coinbase", "ETH-USD", "e4", 12 * MINUTE, "3505", "8", "buy"),
    ("coinbase", "ETH-USD", "e5", 8 * DAY, "3000", "30", "buy"),
]

# (chain, tx, from, to, asset, amount in base units, offset before A)
TRANSFERS = [
    ("ethereum", "x1", "E1", "E2", "ETH", 10 * WEI, 2 * HOUR),
    ("ethereum", "x2", "E1", "E3", "ETH", 5 * WEI, 3 * DAY),
    ("ethereum", "x3", "E2", "E3", "ETH", 2 * WEI, 30 * MINUTE),
    ("ethereum", "x4", "E3", "E4", "ETH", 15 * WEI // 10, 10 * DAY),
    ("ethereum", "x5", "E4", "E1", "ETH", WEI // 4, 5 * HOUR),
    ("ethereum", "x6", "E1", "E4", "USDT", 1000 * MICRO, DAY),
    ("ethereum", "x7", "E2", "E5", "USDT", 250_500_000, 3 * HOUR),
    ("ethereum", "x8", "E5", "E1", "USDC", 4000 * MICRO, 6 * DAY),
    ("ethereum", "x9", "E6", "E2", "ETH", 50 * WEI, 20 * DAY),
    ("bitcoin", "y1", "B1", "B2", "BTC", SATOSHI // 2, 30 * MINUTE),
    ("bitcoin", "y2", "B2", "B3", "BTC", SATOSHI // 5, 2 * DAY),
    ("bitcoin", "y3", "B1", "B3", "BTC", 125 * SATOSHI // 100, DAY),
    ("bitcoin", "y4", "B3", "B4", "BTC", 3 * SATOSHI, 9 * DAY),
]

# (name, category, country)
ENTITIES = [
    ("Kraken", "exchange", "US"),
    ("Bitso", "exchange", "MX"),
    ("Bitstamp", "exchange", "LU"),
    ("Tornado Cash", "mixer", None),
    ("Lazarus Group", "sanctions", "KP"),
    ("Hydra Market", "darknet_market", "RU"),
    ("Garantex", "no_kyc_exchange", "RU"),
    ("Stake", "gambling", "CY"),
]

# (address key, entity, source, delisted)
LABELS = [
    ("E1", "Kraken", "demo", False),
    ("E2", "Tornado Cash", "demo", False),
    ("E3", "Lazarus Group", "ofac:ETH", False),
    ("E4", "Garantex", "ofac:ETH", True),
    ("E5", "Bitso", "demo", False),
    ("B1", "Hydra Market", "ofac:XBT", False),
    ("B2", "Lazarus Group", "ofac:XBT", False),
    ("B3", "Kraken", "demo", False),
]

# (action, amount) deductions after the grants of 1000 and 500.
DEDUCTIONS = [("query", 10), ("query", 15), ("chat", 4), ("address_analysis", 25), ("query", 5)]

# (status, duration ms, rows, error code)
QUERIES = [
    ("completed", 120, 10, ""),
    ("completed", 80, 5, ""),
    ("completed", 300, 100, ""),
    ("completed", 45, 1, ""),
    ("failed", 3, 0, "VALIDATION_FAILED"),
    ("failed", 2, 0, "UNAUTHORIZED"),
    ("timeout", 10000, 0, "TIMEOUT"),
]


@dataclass
class Fixture:
    anchor: int
    user_pk: int
    application_id: str
    addresses: dict[str, str]
    query_ids: frozenset[str]

    def substitute(self, value: Any) -> Any:
        """Placeholders of questions.json replaced by this fixture's values."""
        if isinstance(value, list):
            return [self.substitute(item) for item in value]
        if isinstance(value, dict):
            return {key: self.substitute(item) for key, item in value.items()}
        if not isinstance(value, str):
            return value
        whole = re.fullmatch(r"\{A-(\d+)\}", value)
        if whole:
            return self.anchor - int(whole.group(1))
        text = re.sub(r"\{A-(\d+)\}", lambda m: str(self.anchor - int(m.group(1))), value)
        return re.sub(r"\{([EB]\d)\}", lambda m: self.addresses[m.group(1)], text)


def load(user_id: str = "chat-eval", now_ms: int | None = None) -> Fixture:
    """Create the fixture data (in a database with none of it yet)."""
    anchor = anchor_ms(now_ms)
    addresses = {**ETH_ADDRESSES, **bitcoin_addresses()}
    _load_trades(anchor)
    chains = {code: ensure_chain(code) for code in ("ethereum", "bitcoin")}
    _load_transfers(chains, anchor, addresses)
    _load_labels(chains, addresses)
    user = get_or_create_user(user_id)
    application = user.default_application_id
    assert application is not None
    _load_ledger(user.pk, application, user_id)
    ids = _load_queries(user.pk, application)
    return Fixture(anchor, user.pk, application, addresses, frozenset(ids))


def _load_trades(anchor: int) -> None:
    for venue, symbol in {(t[0], t[1]) for t in TRADES}:
        market.ensure_listing(venue, symbol)
    market.ingest_trades(
        [
            TradeInput(venue, symbol, trade_id, anchor - offset, Decimal(price), Decimal(size), side)
            for venue, symbol, trade_id, offset, price, size, side in TRADES
        ],
        publish=False,
    )


def _load_transfers(chains: dict[str, Chain], anchor: int, addresses: dict[str, str]) -> None:
    contracts = {
        asset.symbol: asset.contract for asset in Asset.objects.filter(chain=chains["ethereum"]).exclude(contract="")
    }
    for code, chain in chains.items():
        with GraphWriter(chain) as writer:
            for index, (chain_code, tx, source, target, asset, amount, offset) in enumerate(TRANSFERS):
                if chain_code != code:
                    continue
                tx_hash = (
                    "0x" + tx.encode().hex().rjust(64, "0") if code == "ethereum" else tx.encode().hex().rjust(64, "0")
                )
                timestamp = anchor - offset
                writer.add_transaction(TxRow(tx_hash, 1000 + index, timestamp, None, "success"))
                kind = (
                    TransferKind.UTXO
                    if code == "bitcoin"
                    else (TransferKind.NATIVE if asset == "ETH" else TransferKind.TOKEN)
                )
                writer.add_transfer(
                    TransferRow(
                        tx_hash,
                        -1 if kind == TransferKind.NATIVE else 0,
                        kind,
                        addresses[source],
                        addresses[target],
                        amount,
                        timestamp,
                        contracts.get(asset, "") if kind == TransferKind.TOKEN else "",
                    )
                )


def _load_labels(chains: dict[str, Chain], addresses: dict[str, str]) -> None:
    entities = {name: get_or_create_entity(name, category, country=country) for name, category, country in ENTITIES}
    for key, entity, source, delisted in LABELS:
        chain = chains["ethereum" if key.startswith("E") else "bitcoin"]
        address = get_or_create_address(chain, addresses[key])
        label = label_address(address, entities[entity], source=source, listed_at=timezone.now() - timedelta(days=30))
        if delisted:
            delist_labels(type(label).objects.filter(pk=label.pk))
    assert Address.objects.count() >= len(addresses)


def _load_ledger(user_pk: int, application: str, user_id: str) -> None:
    actor = credits.Actor.system()
    credits.grant_credits(user_pk, application, 1000, reason="opening grant", actor=actor)
    credits.grant_credits(user_pk, application, 500, reason="top-up", actor=actor)
    for action, amount in DEDUCTIONS:
        credits.deduct_credits(user_pk, application, amount, action=action, actor=credits.Actor.user(user_id))


def _load_queries(user_pk: int, application: str) -> list[str]:
    now = timezone.now()
    ids = []
    for index, (status, duration, rows, error) in enumerate(QUERIES):
        record = QueryRecord.objects.create(
            user_id=user_pk,
            application_id=application,
            sql=f"SELECT {index}",
            status=status,
            duration_ms=duration,
            rows_returned=rows,
            error_code=error,
            created_at=now - timedelta(seconds=len(QUERIES) - index),
            finished_at=now,
        )
        ids.append(record.pk)
    return ids
