"""Public query-engine tables of compliance data: ``transfers``,
``addresses``, ``labels`` and ``entities``.

Stable public names over the models' tables; chains and assets appear as
their codes and symbols, transfer and activity times as epoch
milliseconds (as on the wire), label times as timestamps.

Amounts. ``compliance.fields.AmountField`` keeps base units exactly: on
PostgreSQL as ``numeric(78, 0)``, on SQLite as an INTEGER up to 64 bits
and as TEXT zero-padded to 78 digits beyond. So a transfer exposes
``amount_raw``, the exact base units as decimal text without padding (the
same string on both stacks), and ``amount``, the value in the asset's own
units (``base units / 10^decimals``): exact on PostgreSQL, a double with
about 15 significant digits on SQLite, which is right for ranking and
totals but not for reconciling to the last wei. ``amount`` is null for a
token whose decimals are unknown.
"""

from __future__ import annotations

from typing import Any

from compliance.models import Address, AddressLabel, Asset, Chain, Cluster, Entity, Transaction, Transfer
from queryengine.interface import Column, Scope, Table, register_table


def _column(alias: str, model: Any, name: str) -> str:
    return f'{alias}."{model._meta.get_field(name).column}"'


def _table(model: Any) -> str:
    return f'"{model._meta.db_table}"'


_PK = '"id"'


def _subquery(select: str, source: str, where: str) -> str:
    # Definitions built here from model metadata, never from input.
    return f"(SELECT {select} FROM {source} WHERE {where})"  # noqa: S608


def _lookup(model: Any, alias: str, column: str, key: str) -> str:
    # A correlated scalar subquery rather than a join: SQLite's
    # authorizer sees a joined table that a statement reads nothing
    # from as a read of an unnamed column, which the query engine
    # refuses; a subquery the statement does not use is not read.
    return _subquery(_column(alias, model, column), f"{_table(model)} AS {alias}", f"{alias}.{_PK} = {key}")


def register_compliance_tables() -> None:
    for table in (_transfers(), _addresses(), _labels(), _entities()):
        register_table(table, replace=True)


def _transfers() -> Table:
    tx = _column("t", Transfer, "tx")
    asset = _column("t", Transfer, "asset")
    value = _column("t", Transfer, "value")
    decimals = _lookup(Asset, "sd", "decimals", asset)
    return Table(
        name="transfers",
        description=(
            "Value transfers between addresses (ethereum: native value and token transfers; bitcoin: "
            "address-to-address flows derived from inputs and outputs); ts is the block time in epoch ms."
        ),
        scope=Scope.PUBLIC,
        source=f"{_table(Transfer)} AS t",
        columns=(
            Column(
                "chain",
                "text",
                _subquery(
                    _column("c", Chain, "code"),
                    f"{_table(Transaction)} AS x JOIN {_table(Chain)} AS c "
                    f"ON c.{_PK} = {_column('x', Transaction, 'chain')}",
                    f"x.{_PK} = {tx}",
                ),
                "ethereum or bitcoin.",
            ),
            Column("tx_hash", "text", _lookup(Transaction, "xh", "hash", tx), "Transaction hash."),
            Column("block_number", "integer", _lookup(Transaction, "xb", "block_number", tx), "Block height."),
            Column("ts", "integer", _column("t", Transfer, "timestamp"), "Block time, epoch ms (UTC)."),
            Column(
                "from_address",
                "text",
                _lookup(Address, "fa", "address", _column("t", Transfer, "from_address")),
                "Sender (normal form).",
            ),
            Column(
                "to_address",
                "text",
                _lookup(Address, "ta", "address", _column("t", Transfer, "to_address")),
                "Receiver (normal form).",
            ),
            Column("asset", "text", _lookup(Asset, "s", "symbol", asset), "Asset symbol: ETH, BTC, USDT, ..."),
            Column("token_contract", "text", _lookup(Asset, "sc", "contract", asset), "Token contract; empty: native."),
            Column("kind", "text", _column("t", Transfer, "kind"), "native, token or utxo."),
            Column(
                "amount_raw",
                "text",
                f"COALESCE(NULLIF(LTRIM(CAST({value} AS TEXT), '0'), ''), '0')",
                "Exact amount in base units (wei, satoshi), as decimal text.",
            ),
            Column(
                "amount",
                "decimal",
                f"CAST({value} AS DECIMAL) / POWER(CAST(10 AS DECIMAL), {decimals})",
                "Amount in the asset's units (exact on PostgreSQL, ~15 digits on SQLite).",
            ),
        ),
    )


def _addresses() -> Table:
    address_chain = _column("a", Address, "chain")
    return Table(
        name="addresses",
        description="Addresses seen on-chain or in a label source, with their activity span and cluster.",
        scope=Scope.PUBLIC,
        source=f"{_table(Address)} AS a",
        columns=(
            Column("address", "text", _column("a", Address, "address"), "Normal form."),
            Column("chain", "text", _lookup(Chain, "c", "code", address_chain), "Chain code."),
            Column("first_seen", "integer", _column("a", Address, "first_seen"), "First transfer, epoch ms."),
            Column("last_seen", "integer", _column("a", Address, "last_seen"), "Last transfer, epoch ms."),
            Column("cluster_id", "integer", _column("a", Address, "cluster"), "Ownership cluster, if any."),
            Column(
                "cluster_size",
                "integer",
                _lookup(Cluster, "k", "size", _column("a", Address, "cluster")),
                "Addresses in that cluster.",
            ),
        ),
    )


def _labels() -> Table:
    label_address = _column("l", AddressLabel, "address")
    label_entity = _column("l", AddressLabel, "entity")
    return Table(
        name="labels",
        description=(
            "Attributions of addresses to entities, with their history: a label that left its source has "
            "delisted_at set (active is false)."
        ),
        scope=Scope.PUBLIC,
        source=f"{_table(AddressLabel)} AS l",
        columns=(
            Column("address", "text", _lookup(Address, "a", "address", label_address), "Normal form."),
            Column(
                "chain",
                "text",
                _subquery(
                    _column("c", Chain, "code"),
                    f"{_table(Address)} AS ac JOIN {_table(Chain)} AS c ON c.{_PK} = {_column('ac', Address, 'chain')}",
                    f"ac.{_PK} = {label_address}",
                ),
                "Chain code.",
            ),
            Column("entity", "text", _lookup(Entity, "e", "name", label_entity), "Entity name."),
            Column(
                "category",
                "text",
                _lookup(Entity, "ec", "category", label_entity),
                "sanctions, exchange, mixer, ...",
            ),
            Column(
                "country",
                "text",
                _lookup(Entity, "en", "country", label_entity),
                "ISO 3166-1 alpha-2; null: unknown.",
            ),
            Column("source", "text", _column("l", AddressLabel, "source"), "e.g. ofac:ETH, demo, analyst:jane."),
            Column("confidence", "integer", _column("l", AddressLabel, "confidence"), "0-100."),
            Column("listed_at", "timestamp", _column("l", AddressLabel, "listed_at"), "When it was listed."),
            Column("delisted_at", "timestamp", _column("l", AddressLabel, "delisted_at"), "When it left, if it did."),
            Column(
                "active",
                "boolean",
                f"({_column('l', AddressLabel, 'delisted_at')} IS NULL)",
                "In force (not delisted).",
            ),
        ),
    )


def _entities() -> Table:
    return Table(
        name="entities",
        description="Known entities (exchanges, mixers, sanctioned parties, ...) addresses are attributed to.",
        scope=Scope.PUBLIC,
        source=f"{_table(Entity)} AS e",
        columns=(
            Column("name", "text", _column("e", Entity, "name"), "Unique name."),
            Column("category", "text", _column("e", Entity, "category"), "sanctions, exchange, mixer, ..."),
            Column("country", "text", _column("e", Entity, "country"), "ISO 3166-1 alpha-2; null: unknown."),
            Column("description", "text", _column("e", Entity, "description"), "Free text."),
        ),
    )
