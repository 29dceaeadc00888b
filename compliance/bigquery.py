"""Importers for Google BigQuery public-dataset exports.

Tables (columns read; others ignored):

- ``bigquery-public-data.crypto_ethereum.transactions``: hash, block_number,
  block_timestamp, from_address, to_address, value, receipt_status,
  receipt_contract_address, receipt_gas_used, receipt_effective_gas_price or
  gas_price. A successful transaction's value becomes a ``native`` edge
  (index -1), zero values included so that an address's history is complete;
  a reverted one moved nothing and gets no edge, only its fee.
- ``crypto_ethereum.token_transfers``: token_address, from_address,
  to_address, value, transaction_hash, log_index, block_timestamp,
  block_number. One ``token`` edge per log; unknown tokens become assets
  without symbol or decimals.
- ``crypto_bitcoin.transactions``: hash, block_number, block_timestamp, fee
  and the nested ``inputs``/``outputs`` (index, addresses, value, and for
  inputs spent_transaction_hash, spent_output_index). A port with exactly
  one valid address is attributed to it, any other (multisig, OP_RETURN,
  non-standard) is kept without an address.

Files: CSV with a header row, or newline-delimited JSON (BigQuery's two text
export formats), optionally gzip-compressed (``.gz``). Nested fields cannot
be exported to CSV, so a Bitcoin CSV must carry ``inputs``/``outputs`` as JSON
strings (``TO_JSON_STRING``). Timestamps may be BigQuery's
``2024-01-01 00:00:00 UTC``, ISO 8601, or epoch seconds/ms/µs.

Rows that cannot be read (a malformed address or hash, a fractional amount)
are skipped and counted by reason, with the first examples kept.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from compliance.addresses import BITCOIN, ETHEREUM, InvalidAddress, bitcoin_address, ethereum_address
from compliance.fields import to_amount
from compliance.ingest import GraphWriter, PortRow, TransferRow, TxRow, utxo_edges
from compliance.models import Chain, Transaction, Transfer, TransferKind, TxInput, TxOutput, TxStatus
from compliance.services import ensure_chain

TABLES = {ETHEREUM: ("transactions", "token_transfers"), BITCOIN: ("transactions",)}
_ETH_HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
_BTC_HASH_RE = re.compile(r"^[0-9a-f]{64}$")
_MAX_EXAMPLES = 20


class RowError(ValueError):
    """A row that cannot be imported; the message is the reason counted."""


@dataclass
class BigQueryImportResult:
    chain: str
    table: str
    rows: int = 0
    imported: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    created: dict[str, int] = field(default_factory=dict)
    opaque_transactions: int = 0  # UTXO transactions too large for derived edges

    def skip(self, where: str, reason: str) -> None:
        self.skipped[reason] += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(f"{where}: {reason}")


# --- reading ----------------------------------------------------------------------


def _open_text(path: Path) -> IO[str]:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def read_rows(path: Path | str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV or JSON-lines export; empty CSV cells are None."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    with _open_text(path) as handle:
        if name.endswith(".csv"):
            for number, row in enumerate(csv.DictReader(handle), start=2):
                yield number, {k: (v if v != "" else None) for k, v in row.items()}
        elif name.endswith((".json", ".jsonl", ".ndjson")):
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    try:
                        yield number, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
        else:
            raise ValueError(f"{path}: expected .csv, .json, .jsonl or .ndjson (optionally .gz)")


def parse_timestamp_ms(value: Any) -> int:
    if value is None or value == "":
        raise RowError("missing block_timestamp")
    if isinstance(value, int | float) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value)):
        number = float(value)
        if number < 1e11:
            return round(number * 1000)
        if number < 1e14:
            return int(number)
        return int(number // 1000)
    text = str(value).strip()
    if text.endswith(" UTC"):
        text = text[:-4] + "+00:00"
    elif text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RowError("unreadable block_timestamp") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _int(value: Any, name: str, *, required: bool = True) -> int | None:
    if value is None or value == "":
        if required:
            raise RowError(f"missing {name}")
        return None
    try:
        return to_amount(value)
    except ValueError:
        raise RowError(f"bad {name}") from None


def _eth_address(value: Any, name: str, *, required: bool = True) -> str | None:
    if value is None or value == "":
        if required:
            raise RowError(f"missing {name}")
        return None
    normal = _checked_ethereum_address(str(value))
    if normal is None:
        raise RowError(f"bad {name}")
    return normal


@lru_cache(maxsize=1 << 18)
def _checked_ethereum_address(text: str) -> str | None:
    try:
        return ethereum_address(text.strip())
    except InvalidAddress:
        return None


def _hash(value: Any, pattern: re.Pattern[str], name: str) -> str:
    text = str(value or "").strip().lower()
    if not pattern.match(text):
        raise RowError(f"bad {name}")
    return text


# --- tables -------------------------------------------------------------------------


def _ethereum_transaction(row: dict[str, Any], writer: GraphWriter) -> None:
    tx_hash = _hash(row.get("hash"), _ETH_HASH_RE, "hash")
    timestamp = parse_timestamp_ms(row.get("block_timestamp"))
    block = _int(row.get("block_number"), "block_number", required=False)
    sender = _eth_address(row.get("from_address"), "from_address")
    receiver = _eth_address(row.get("to_address"), "to_address", required=False) or _eth_address(
        row.get("receipt_contract_address"), "receipt_contract_address", required=False
    )
    value = _int(row.get("value"), "value") or 0
    raw_status = row.get("receipt_status")
    status = {"1": TxStatus.SUCCESS, "0": TxStatus.FAILED}.get(str(raw_status), TxStatus.UNKNOWN)
    gas_used = _int(row.get("receipt_gas_used"), "receipt_gas_used", required=False)
    price = _int(row.get("receipt_effective_gas_price"), "receipt_effective_gas_price", required=False)
    if price is None:
        price = _int(row.get("gas_price"), "gas_price", required=False)
    fee = gas_used * price if gas_used is not None and price is not None else None
    writer.add_transaction(TxRow(tx_hash, block, timestamp, fee, status))
    if status != TxStatus.FAILED:
        writer.add_transfer(TransferRow(tx_hash, -1, TransferKind.NATIVE, sender, receiver, value, timestamp))


def _ethereum_token_transfer(row: dict[str, Any], writer: GraphWriter) -> None:
    tx_hash = _hash(row.get("transaction_hash"), _ETH_HASH_RE, "transaction_hash")
    timestamp = parse_timestamp_ms(row.get("block_timestamp"))
    block = _int(row.get("block_number"), "block_number", required=False)
    token = _eth_address(row.get("token_address"), "token_address")
    sender = _eth_address(row.get("from_address"), "from_address")
    receiver = _eth_address(row.get("to_address"), "to_address")
    value = _int(row.get("value"), "value")
    log_index = _int(row.get("log_index"), "log_index")
    assert token is not None and value is not None and log_index is not None
    # A log exists only in a successful transaction; fee and the rest come
    # from the transactions table when it is imported.
    writer.add_transaction(TxRow(tx_hash, block, timestamp, None, TxStatus.SUCCESS))
    writer.add_transfer(TransferRow(tx_hash, log_index, TransferKind.TOKEN, sender, receiver, value, timestamp, token))


def _ports(value: Any, name: str) -> list[dict[str, Any]]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError(f"bad {name}") from None
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise RowError(f"bad {name}")
    return value


@lru_cache(maxsize=1 << 18)
def _checked_bitcoin_address(text: str) -> str | None:
    # Addresses recur across inputs and outputs; checksums are pure Python.
    try:
        return bitcoin_address(text.strip())
    except InvalidAddress:
        return None


def _port_address(port: dict[str, Any]) -> str | None:
    addresses = port.get("addresses")
    if isinstance(addresses, str):
        addresses = [addresses]
    if not isinstance(addresses, list) or len(addresses) != 1:
        return None
    return _checked_bitcoin_address(str(addresses[0]))


def _bitcoin_transaction(row: dict[str, Any], writer: GraphWriter, result: BigQueryImportResult) -> None:
    tx_hash = _hash(row.get("hash"), _BTC_HASH_RE, "hash")
    timestamp = parse_timestamp_ms(row.get("block_timestamp"))
    block = _int(row.get("block_number"), "block_number", required=False)
    fee = _int(row.get("fee"), "fee", required=False)
    inputs = []
    for position, port in enumerate(_ports(row.get("inputs"), "inputs")):
        index = _int(port.get("index", position), "inputs.index")
        spent_index = _int(port.get("spent_output_index"), "inputs.spent_output_index", required=False)
        spent_hash = str(port.get("spent_transaction_hash") or "").lower()
        inputs.append(
            PortRow(
                tx_hash,
                index or 0,
                _port_address(port),
                _int(port.get("value"), "inputs.value") or 0,
                timestamp,
                spent_hash,
                spent_index,
            )
        )
    outputs = [
        PortRow(
            tx_hash,
            _int(port.get("index", position), "outputs.index") or 0,
            _port_address(port),
            _int(port.get("value"), "outputs.value") or 0,
            timestamp,
        )
        for position, port in enumerate(_ports(row.get("outputs"), "outputs"))
    ]
    writer.add_transaction(TxRow(tx_hash, block, timestamp, fee, TxStatus.SUCCESS))
    writer.extend(inputs=inputs, outputs=outputs)
    edges = utxo_edges(
        tx_hash, timestamp, [(p.address, p.value) for p in inputs], [(p.address, p.value) for p in outputs]
    )
    if edges is None:
        result.opaque_transactions += 1
        return
    for edge in edges:
        writer.add_transfer(edge)


def _counts(chain: Chain) -> dict[str, int]:
    return {
        "transactions": Transaction.objects.filter(chain=chain).count(),
        "transfers": Transfer.objects.filter(tx__chain=chain).count(),
        "inputs": TxInput.objects.filter(tx__chain=chain).count(),
        "outputs": TxOutput.objects.filter(tx__chain=chain).count(),
    }


def import_bigquery_export(
    chain: str, table: str, paths: Iterable[Path | str], *, batch_size: int = 20_000
) -> BigQueryImportResult:
    """Import export files of one table; re-importing the same rows adds
    nothing. Committed batch by batch, so an interrupted import is resumed by
    running it again."""
    if table not in TABLES.get(chain, ()):
        raise ValueError(f"no importer for {chain}.{table}; known: {TABLES}")
    chain_row = ensure_chain(chain)
    result = BigQueryImportResult(chain, table)
    before = _counts(chain_row)
    writer = GraphWriter(chain_row, upsert_transactions=(table == "transactions"), batch_size=batch_size)
    for path in paths:
        for number, row in read_rows(path):
            result.rows += 1
            try:
                if chain == BITCOIN:
                    _bitcoin_transaction(row, writer, result)
                elif table == "transactions":
                    _ethereum_transaction(row, writer)
                else:
                    _ethereum_token_transfer(row, writer)
            except RowError as exc:
                result.skip(f"{Path(path).name}:{number}", str(exc))
                continue
            result.imported += 1
    writer.close()
    after = _counts(chain_row)
    result.created = {key: after[key] - before[key] for key in after}
    return result
