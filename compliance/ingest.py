"""Bulk, idempotent writing of transactions, transfers and UTXO inputs and
outputs: the one write path of every importer and of the demo generator.

Rows are plain tuples of already-normalised values. ``GraphWriter`` buffers
them and flushes a batch in one database transaction: missing addresses,
token assets and transactions are inserted with ON CONFLICT DO NOTHING (the
unique constraints make a re-run a no-op), their ids read back, then edges,
inputs and outputs are inserted the same way. Address first/last-seen times
are widened in the same transaction. Rows go in through ``insert_rows``,
which sends no per-row signals and skips Django's per-instance work: that is
what makes 100,000 edges a matter of seconds on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from django.db import connection, models, transaction
from django.db.models import Model

from compliance.batching import chunked
from compliance.fields import INT64_MAX, AmountField, amount_db_value
from compliance.live import publish_after_commit
from compliance.models import (
    Address,
    Asset,
    Chain,
    Transaction,
    TransferKind,
    TxInput,
    TxOutput,
    TxStatus,
)
from compliance.models import Transfer as TransferModel

# A UTXO transaction whose address pairs exceed this gets no derived edges
# (large CoinJoins): the walk treats it as opaque rather than storing
# millions of edges for one transaction.
MAX_UTXO_EDGES = 10_000


class TxRow(NamedTuple):
    hash: str
    block_number: int | None
    timestamp: int  # epoch ms
    fee: int | None = None
    status: str = TxStatus.UNKNOWN


class TransferRow(NamedTuple):
    tx_hash: str
    position: int  # -1 for a transaction's own value, a log index, or a UTXO edge number
    kind: str
    from_address: str | None
    to_address: str | None
    value: int
    timestamp: int
    token: str = ""  # token contract; empty for the native coin


class PortRow(NamedTuple):
    """A UTXO input (with the output it spends) or output."""

    tx_hash: str
    position: int  # input or output index
    address: str | None
    value: int
    timestamp: int
    spent_tx_hash: str = ""
    spent_output_index: int | None = None


_PLAIN_FIELDS = (models.IntegerField, models.CharField, models.ForeignKey, models.BooleanField)


def insert_rows(
    model: type[Model],
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    update: Sequence[str] = (),
    conflict: Sequence[str] = (),
) -> None:
    """INSERT rows (tuples aligned with ``columns``, attribute names such as
    ``tx_id``) with ON CONFLICT DO NOTHING, or DO UPDATE of ``update`` on the
    ``conflict`` columns (SQLite 3.24+ and PostgreSQL share the clause).

    Straight SQL rather than ``bulk_create``, whose per-instance work costs
    ten times the insert itself: ``executemany`` on SQLite (a C loop in
    process), COPY into a temporary table then one INSERT ... SELECT on
    PostgreSQL (row-by-row INSERTs, even pipelined, are an order of magnitude
    slower there)."""
    opts = model._meta
    fields = [opts.get_field(c) for c in columns]
    quote = connection.ops.quote_name

    def column(name: str) -> str:
        return quote(str(opts.get_field(name).column))  # type: ignore[union-attr]

    names = ", ".join(column(c) for c in columns)
    table = quote(opts.db_table)
    if update:
        targets = ", ".join(column(c) for c in conflict)
        assignments = ", ".join(f"{column(u)} = excluded.{column(u)}" for u in update)
        # Rows that would not change are left alone: a re-import writes nothing.
        distinct = "IS DISTINCT FROM" if connection.vendor == "postgresql" else "IS NOT"
        changed = " OR ".join(f"{table}.{column(u)} {distinct} excluded.{column(u)}" for u in update)
        on_conflict = f" ON CONFLICT ({targets}) DO UPDATE SET {assignments} WHERE {changed}"
    else:
        on_conflict = " ON CONFLICT DO NOTHING"
    prepared = _prepared_rows(rows, fields, connection.vendor)
    # Identifiers below come from model metadata; values travel as parameters or COPY data.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            stage = quote(f"stage_{opts.db_table}"[:60])
            cursor.execute(f"DROP TABLE IF EXISTS {stage}")
            cursor.execute(f"CREATE TEMPORARY TABLE {stage} AS SELECT {names} FROM {table} WITH NO DATA")  # noqa: S608
            with cursor.copy(f"COPY {stage} ({names}) FROM STDIN") as copy:
                for row in prepared:
                    copy.write_row(row)
            cursor.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM {stage}{on_conflict}")  # noqa: S608
            cursor.execute(f"DROP TABLE {stage}")
            return
        placeholders = ", ".join(["%s"] * len(fields))
        sql = f"INSERT INTO {table} ({names}) VALUES ({placeholders}){on_conflict}"  # noqa: S608
        batch: list[Sequence[Any]] = []
        for row in prepared:
            batch.append(row)
            if len(batch) >= 5000:
                cursor.executemany(sql, batch)
                batch = []
        if batch:
            cursor.executemany(sql, batch)


def widen_activity(rows: Sequence[tuple[int, int, int]]) -> None:
    """Extend addresses' first/last-seen times to include (id, low, high).
    Only ever widens, so concurrent importers cannot undo each other."""
    if not rows:
        return
    quote = connection.ops.quote_name
    table = quote(Address._meta.db_table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            stage = quote("stage_address_activity")
            cursor.execute(f"DROP TABLE IF EXISTS {stage}")
            cursor.execute(f"CREATE TEMPORARY TABLE {stage} (id bigint, low bigint, high bigint)")
            with cursor.copy(f"COPY {stage} (id, low, high) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(
                f"UPDATE {table} AS a SET first_seen = LEAST(COALESCE(a.first_seen, s.low), s.low), "  # noqa: S608
                f"last_seen = GREATEST(COALESCE(a.last_seen, s.high), s.high) FROM {stage} AS s WHERE a.id = s.id"
            )
            cursor.execute(f"DROP TABLE {stage}")
            return
        cursor.executemany(
            f"UPDATE {table} SET first_seen = MIN(COALESCE(first_seen, %s), %s), "  # noqa: S608
            "last_seen = MAX(COALESCE(last_seen, %s), %s) WHERE id = %s",
            [(low, low, high, high, pk) for pk, low, high in rows],
        )


def _prepared_rows(rows: Iterable[Sequence[Any]], fields: list[Any], vendor: str) -> Iterator[Sequence[Any]]:
    # Integers and strings go to the driver as they are; datetimes through
    # the field's own conversion; amounts (already validated ints) only on
    # SQLite and only past 64 bits, which is rare enough to test per value.
    amounts = [i for i, f in enumerate(fields) if isinstance(f, AmountField)] if vendor == "sqlite" else []
    others = [(i, f) for i, f in enumerate(fields) if not isinstance(f, (*_PLAIN_FIELDS, AmountField))]
    if not (amounts or others):
        yield from rows
        return
    if len(amounts) == 1 and not others:  # the hot path: one amount column
        i = amounts[0]
        for row in rows:
            value = row[i]
            if value is not None and value > INT64_MAX:
                yield (*row[:i], amount_db_value(value, vendor), *row[i + 1 :])
            else:
                yield row
        return
    for row in rows:
        if others or any(row[i] is not None and row[i] > INT64_MAX for i in amounts):
            values = list(row)
            for i in amounts:
                values[i] = amount_db_value(values[i], vendor)
            for i, f in others:
                values[i] = f.get_db_prep_save(values[i], connection)
            yield values
        else:
            yield row


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """``total`` split in proportion to ``weights`` exactly (largest
    remainder; ties go to the earlier weight), so that shares add up."""
    weight_sum = sum(weights)
    if weight_sum <= 0:
        return [0] * len(weights)
    shares = [total * w // weight_sum for w in weights]
    left = total - sum(shares)
    if left:
        order = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % weight_sum), i))
        for i in order[:left]:
            shares[i] += 1
    return shares


def utxo_edges(
    tx_hash: str,
    timestamp: int,
    inputs: Iterable[tuple[str | None, int]],
    outputs: Iterable[tuple[str | None, int]],
    *,
    max_edges: int = MAX_UTXO_EDGES,
) -> list[TransferRow] | None:
    """Address-to-address edges of a UTXO transaction: each output's value is
    shared among the input addresses in proportion to their input value (the
    fee stays with no one). Inputs without a known address keep their share
    unattributed. A coinbase (no input) gets edges from no address. Edges are
    numbered output-major in first-appearance order, so re-deriving them from
    the same data gives the same indexes. None when there would be more than
    ``max_edges``."""
    senders: dict[str | None, int] = {}
    for address, value in inputs:
        senders[address] = senders.get(address, 0) + value
    receivers: dict[str, int] = {}
    for address, value in outputs:
        if address is not None:
            receivers[address] = receivers.get(address, 0) + value
    known = [a for a in senders if a is not None]
    if len(known) * len(receivers) > max_edges:
        return None
    edges: list[TransferRow] = []
    if not senders:
        for receiver, value in receivers.items():
            edges.append(TransferRow(tx_hash, len(edges), TransferKind.UTXO, None, receiver, value, timestamp))
        return edges
    weights = [senders[a] for a in known] + [senders.get(None, 0)]
    for receiver, value in receivers.items():
        for sender, share in zip(known, apportion(value, weights)[: len(known)], strict=True):
            if share > 0:
                edges.append(TransferRow(tx_hash, len(edges), TransferKind.UTXO, sender, receiver, share, timestamp))
    return edges


@dataclass
class WriteCounts:
    transactions: int = 0
    transfers: int = 0
    inputs: int = 0
    outputs: int = 0


@dataclass
class GraphWriter:
    """Buffers rows for one chain and writes them in batches.

    ``upsert_transactions``: a transaction that already exists gets this row's
    block, time, fee and status (the transactions table is authoritative);
    otherwise an existing transaction is left alone (token transfers only know
    that their transaction succeeded)."""

    chain: Chain
    upsert_transactions: bool = False
    batch_size: int = 20_000
    # Announce each committed batch to the address rooms (compliance.live).
    publish: bool = False
    # Rows handed to the writer (not rows created: re-runs hand the same rows).
    seen: WriteCounts = field(default_factory=WriteCounts)
    _txs: dict[str, TxRow] = field(default_factory=dict)
    _transfers: list[TransferRow] = field(default_factory=list)
    _inputs: list[PortRow] = field(default_factory=list)
    _outputs: list[PortRow] = field(default_factory=list)
    # address -> (id, first_seen, last_seen), across batches
    _addresses: dict[str, tuple[int, int | None, int | None]] = field(default_factory=dict)
    _assets: dict[str, int] = field(default_factory=dict)

    def add_transaction(self, row: TxRow) -> None:
        self._txs[row.hash] = row
        self.seen.transactions += 1
        self._maybe_flush()

    def add_transfer(self, row: TransferRow) -> None:
        self._transfers.append(row)
        self.seen.transfers += 1
        self._maybe_flush()

    def add_input(self, row: PortRow) -> None:
        self._inputs.append(row)
        self.seen.inputs += 1
        self._maybe_flush()

    def add_output(self, row: PortRow) -> None:
        self._outputs.append(row)
        self.seen.outputs += 1
        self._maybe_flush()

    def extend(
        self,
        *,
        transactions: Iterable[TxRow] = (),
        transfers: Iterable[TransferRow] = (),
        inputs: Iterable[PortRow] = (),
        outputs: Iterable[PortRow] = (),
    ) -> None:
        """Many rows at once (flushed together, whatever ``batch_size`` says)."""
        before = len(self._txs)
        self._txs.update((r.hash, r) for r in transactions)
        self.seen.transactions += len(self._txs) - before
        size = len(self._transfers)
        self._transfers.extend(transfers)
        self.seen.transfers += len(self._transfers) - size
        size = len(self._inputs)
        self._inputs.extend(inputs)
        self.seen.inputs += len(self._inputs) - size
        size = len(self._outputs)
        self._outputs.extend(outputs)
        self.seen.outputs += len(self._outputs) - size
        self._maybe_flush()

    def _pending(self) -> int:
        return len(self._txs) + len(self._transfers) + len(self._inputs) + len(self._outputs)

    def _maybe_flush(self) -> None:
        if self._pending() >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self._pending():
            return
        with transaction.atomic():
            if self.publish:
                self._publish_after_commit()
            address_ids = self._address_ids()
            asset_ids = self._asset_ids()
            tx_ids = self._transaction_ids()
            insert_rows(
                TransferModel,
                ("tx_id", "index", "kind", "from_address_id", "to_address_id", "asset_id", "value", "timestamp"),
                (
                    (
                        tx_ids[r.tx_hash],
                        r.position,
                        r.kind,
                        None if r.from_address is None else address_ids[r.from_address],
                        None if r.to_address is None else address_ids[r.to_address],
                        asset_ids[r.token],
                        r.value,
                        r.timestamp,
                    )
                    for r in self._transfers
                ),
            )
            insert_rows(
                TxInput,
                ("tx_id", "index", "address_id", "value", "spent_tx_hash", "spent_output_index"),
                (
                    (
                        tx_ids[r.tx_hash],
                        r.position,
                        None if r.address is None else address_ids[r.address],
                        r.value,
                        r.spent_tx_hash,
                        r.spent_output_index,
                    )
                    for r in self._inputs
                ),
            )
            insert_rows(
                TxOutput,
                ("tx_id", "index", "address_id", "value"),
                (
                    (tx_ids[r.tx_hash], r.position, None if r.address is None else address_ids[r.address], r.value)
                    for r in self._outputs
                ),
            )
        self._txs.clear()
        self._transfers.clear()
        self._inputs.clear()
        self._outputs.clear()
        if len(self._addresses) > 1_000_000:
            self._addresses.clear()

    def close(self) -> None:
        self.flush()

    def _publish_after_commit(self) -> None:
        addresses = {a for t in self._transfers for a in (t.from_address, t.to_address) if a is not None}
        addresses.update(p.address for p in (*self._inputs, *self._outputs) if p.address is not None)
        hashes = set(self._txs)
        hashes.update(t.tx_hash for t in self._transfers)
        hashes.update(p.tx_hash for p in (*self._inputs, *self._outputs))
        publish_after_commit(self.chain.code, addresses, hashes)

    def __enter__(self) -> GraphWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()

    # --- lookups ----------------------------------------------------------------

    def _address_ids(self) -> dict[str, int]:
        bounds: dict[str, tuple[int, int]] = {}

        def see(address: str | None, ts: int) -> None:
            if address is None:
                return
            low_high = bounds.get(address)
            if low_high is None:
                bounds[address] = (ts, ts)
            elif ts < low_high[0] or ts > low_high[1]:
                bounds[address] = (min(ts, low_high[0]), max(ts, low_high[1]))

        for t in self._transfers:
            see(t.from_address, t.timestamp)
            see(t.to_address, t.timestamp)
        for p in self._inputs:
            see(p.address, p.timestamp)
        for p in self._outputs:
            see(p.address, p.timestamp)

        missing = [a for a in bounds if a not in self._addresses]
        if missing:
            insert_rows(
                Address,
                ("chain_id", "address", "first_seen", "last_seen"),
                ((self.chain.pk, a, bounds[a][0], bounds[a][1]) for a in missing),
            )
            for chunk in chunked(missing):
                for pk, address, first, last in Address.objects.filter(chain=self.chain, address__in=chunk).values_list(
                    "id", "address", "first_seen", "last_seen"
                ):
                    self._addresses[address] = (pk, first, last)

        widened = []
        for address, (low, high) in bounds.items():
            pk, first, last = self._addresses[address]
            new_first = low if first is None else min(first, low)
            new_last = high if last is None else max(last, high)
            if (new_first, new_last) != (first, last):
                self._addresses[address] = (pk, new_first, new_last)
                widened.append((pk, new_first, new_last))
        widen_activity(widened)
        return {a: self._addresses[a][0] for a in bounds}

    def _asset_ids(self) -> dict[str, int]:
        tokens = {t.token for t in self._transfers} | {""}
        missing = [t for t in tokens if t not in self._assets]
        if missing:
            Asset.objects.bulk_create(
                [
                    Asset(chain=self.chain, contract=t)
                    if t
                    else Asset(
                        chain=self.chain,
                        contract="",
                        symbol=self.chain.native_symbol,
                        name=self.chain.name,
                        decimals=self.chain.native_decimals,
                    )
                    for t in missing
                ],
                ignore_conflicts=True,
            )
            for chunk in chunked(missing):
                for pk, contract in Asset.objects.filter(chain=self.chain, contract__in=chunk).values_list(
                    "id", "contract"
                ):
                    self._assets[contract] = pk
        return self._assets

    def _transaction_ids(self) -> dict[str, int]:
        rows = [(self.chain.pk, r.hash, r.block_number, r.timestamp, r.fee, r.status) for r in self._txs.values()]
        insert_rows(
            Transaction,
            ("chain_id", "hash", "block_number", "timestamp", "fee", "status"),
            rows,
            update=("block_number", "timestamp", "fee", "status") if self.upsert_transactions else (),
            conflict=("chain_id", "hash"),
        )
        wanted = set(self._txs)
        wanted.update(t.tx_hash for t in self._transfers)
        wanted.update(p.tx_hash for p in self._inputs)
        wanted.update(p.tx_hash for p in self._outputs)
        ids: dict[str, int] = {}
        hashes = sorted(wanted)
        for chunk in chunked(hashes):
            ids.update(Transaction.objects.filter(chain=self.chain, hash__in=chunk).values_list("hash", "id"))
        absent = wanted - ids.keys()
        if absent:
            raise ValueError(f"{len(absent)} transfer(s) reference unknown transactions, e.g. {min(absent)}")
        return ids
