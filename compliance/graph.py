"""Read side of the transaction graph, for the analysis walk and history pages.

Everything works on address ids and returns plain tuples, so a breadth-first
walk can expand a frontier of thousands of addresses with a few indexed
queries per hop: ``transfers_touching`` reads the ``(from_address, timestamp,
tx)`` and ``(to_address, timestamp, tx)`` indexes, one range scan per
address, in chunks small enough for any database's parameter limit.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, NamedTuple

from django.db.models import Q
from django.utils import timezone

from compliance.batching import chunked
from compliance.models import Address, AddressLabel, Asset, Chain, Transaction, Transfer
from compliance.services import normalise_on_chain

Direction = Literal["in", "out", "both"]


class Edge(NamedTuple):
    id: int
    tx_id: int
    from_id: int | None
    to_id: int | None
    asset_id: int
    value: int  # base units of the asset
    timestamp: int  # epoch ms


@dataclass(frozen=True)
class EdgeBatch:
    edges: list[Edge]  # ordered by (timestamp, id)
    truncated: bool  # more edges matched than ``limit``


class LabelFact(NamedTuple):
    address_id: int
    entity_id: int
    entity_name: str
    category: str
    country: str | None
    source: str
    source_version: str
    confidence: int


class AssetFact(NamedTuple):
    id: int
    chain: str
    symbol: str
    contract: str
    decimals: int | None


_EDGE_FIELDS = ("id", "tx_id", "from_address_id", "to_address_id", "asset_id", "value", "timestamp")


def address_ids(chain: str, addresses: Iterable[str]) -> dict[str, int]:
    """Stored ids of addresses given in any accepted spelling; unknown or
    invalid ones are left out. Keys are the spellings given."""
    chain_row = Chain.objects.filter(code=chain).first()
    if chain_row is None:
        return {}
    normal: dict[str, list[str]] = {}
    for given in addresses:
        try:
            normal.setdefault(normalise_on_chain(chain_row, given), []).append(given)
        except ValueError:
            continue
    found: dict[str, int] = {}
    for chunk in chunked(sorted(normal)):
        for pk, address in Address.objects.filter(chain=chain_row, address__in=chunk).values_list("id", "address"):
            for given in normal[address]:
                found[given] = pk
    return found


def transfers_touching(
    address_ids: Collection[int],
    *,
    since: int | None = None,
    until: int | None = None,
    direction: Direction = "both",
    min_value: int = 1,
    limit: int | None = None,
) -> EdgeBatch:
    """Transfers into and/or out of any of ``address_ids`` with ``since <=
    timestamp < until`` (epoch ms, either open) and ``value >= min_value``
    (default: zero-value calls, which move nothing, are left out).

    ``limit`` bounds the edges read (the newest are kept when it is hit), so a
    huge neighbourhood costs bounded time and says it was truncated."""
    window = Q(value__gte=min_value) if min_value > 0 else Q()
    if since is not None:
        window &= Q(timestamp__gte=since)
    if until is not None:
        window &= Q(timestamp__lt=until)
    ids = sorted(set(address_ids))
    columns = (["from_address_id"] if direction in ("out", "both") else []) + (
        ["to_address_id"] if direction in ("in", "both") else []
    )
    found: dict[int, Edge] = {}
    truncated = False
    for column in columns:
        for chunk in chunked(ids):
            query = Transfer.objects.filter(window, **{f"{column}__in": chunk}).order_by("-timestamp", "-id")
            if limit is not None:
                query = query[: limit + 1]
            rows = list(query.values_list(*_EDGE_FIELDS))
            if limit is not None and len(rows) > limit:
                truncated = True
            for row in rows:
                found[row[0]] = Edge(*row)
    edges = sorted(found.values(), key=lambda e: (e.timestamp, e.id))
    if limit is not None and len(edges) > limit:
        truncated = True
        edges = edges[-limit:]
    return EdgeBatch(edges, truncated)


def active_labels(address_ids: Collection[int], *, at: datetime | None = None) -> dict[int, list[LabelFact]]:
    """Labels in force at ``at`` (default now) of these addresses: listed by
    then and not delisted by then."""
    moment = at or timezone.now()
    result: dict[int, list[LabelFact]] = {}
    for chunk in chunked(sorted(set(address_ids))):
        rows = (
            AddressLabel.objects.filter(address_id__in=chunk, listed_at__lte=moment)
            .filter(Q(delisted_at__isnull=True) | Q(delisted_at__gt=moment))
            .order_by("address_id", "-confidence", "id")
            .values_list(
                "address_id",
                "entity_id",
                "entity__name",
                "entity__category",
                "entity__country",
                "source",
                "source_version",
                "confidence",
            )
        )
        for row in rows:
            result.setdefault(row[0], []).append(LabelFact(*row))
    return result


def clusters_of(address_ids: Collection[int]) -> dict[int, int]:
    """address id -> cluster id, for the clustered ones."""
    result: dict[int, int] = {}
    for chunk in chunked(sorted(set(address_ids))):
        result.update(Address.objects.filter(id__in=chunk, cluster__isnull=False).values_list("id", "cluster_id"))
    return result


def cluster_members(cluster_id: int, *, limit: int = 10_000) -> list[int]:
    return list(Address.objects.filter(cluster_id=cluster_id).order_by("id").values_list("id", flat=True)[:limit])


def transaction_hashes(tx_ids: Collection[int]) -> dict[int, str]:
    result: dict[int, str] = {}
    for chunk in chunked(sorted(set(tx_ids))):
        result.update(Transaction.objects.filter(id__in=chunk).values_list("id", "hash"))
    return result


def address_strings(address_ids: Collection[int]) -> dict[int, str]:
    result: dict[int, str] = {}
    for chunk in chunked(sorted(set(address_ids))):
        result.update(Address.objects.filter(id__in=chunk).values_list("id", "address"))
    return result


def assets(asset_ids: Collection[int]) -> dict[int, AssetFact]:
    result: dict[int, AssetFact] = {}
    for chunk in chunked(sorted(set(asset_ids))):
        rows = Asset.objects.filter(id__in=chunk).values_list("id", "chain__code", "symbol", "contract", "decimals")
        for row in rows:
            result[row[0]] = AssetFact(*row)
    return result
