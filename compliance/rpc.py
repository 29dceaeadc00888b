"""Ethereum JSON-RPC block ingester: blocks with their full transactions,
receipts (status, fee) and ERC-20 ``Transfer`` logs, through the same write
path as every importer (``compliance.ingest.GraphWriter``).

Mapping (the same as the BigQuery importer's, so both sources agree):

- a transaction: hash, block, block time (epoch ms), fee = gasUsed x
  effectiveGasPrice (the transaction's gasPrice on nodes without the
  receipt field) and status from the receipt (``0x1`` success, ``0x0``
  failed, anything else unknown). Transactions are upserted: the node is
  authoritative for them.
- its value: a ``native`` edge (index -1) from the sender to the recipient,
  or to the created contract for a deployment, zero values included so that
  an address's history is complete; a reverted transaction moved nothing
  and gets no edge, only its fee.
- ``Transfer(address indexed, address indexed, uint256)`` logs with exactly
  three topics and a 32-byte data word (ERC-20; ERC-721 indexes the token id
  as a fourth topic and moves no amount): a ``token`` edge per log, indexed
  by its log index, for the log's contract as the asset. Logs the node marks
  ``removed`` (a reorganisation) are skipped.

Blocks are read ``batch`` at a time: one JSON-RPC batch of
``eth_getBlockByNumber(n, true)``, one ``eth_getLogs`` over the range, and
the receipts (``eth_getBlockReceipts`` per block where the node has it,
else batched ``eth_getTransactionReceipt``), then written and committed, so
an interrupted run is resumed by running it again; re-running writes
nothing new.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, retry_if_result, stop_after_attempt

from compliance.addresses import ETHEREUM
from compliance.ingest import GraphWriter, TransferRow, TxRow
from compliance.models import Chain, Transaction, Transfer, TransferKind, TxStatus
from compliance.services import ensure_chain

log = logging.getLogger(__name__)

# keccak256("Transfer(address,address,uint256)"), checked against compliance.keccak by the tests.
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"

_ADDRESS_RE = re.compile(r"^0x[0-9a-f]{40}$")
_HASH_RE = re.compile(r"^0x[0-9a-f]{64}$")
# JSON-RPC error codes that say "try again later" rather than "this is wrong".
_TRANSIENT_CODES = {-32005, -32603, 429}
_METHOD_NOT_FOUND = -32601


class RpcError(Exception):
    """A JSON-RPC error object, or a response that is not one."""

    def __init__(self, message: str, code: int | None = None, data: Any = None) -> None:
        super().__init__(message if code is None else f"{message} (code {code})")
        self.code = code
        self.data = data
        self.transient = False  # sending the same request again may succeed


class RpcTransportError(RpcError):
    """The node could not be reached or answered with an HTTP error."""


class RpcClient:
    """A small JSON-RPC 2.0 client over HTTP (urllib; tenacity retries):
    single calls and batches, with retries and exponential backoff on
    transport failures, HTTP 429/5xx and rate-limit errors. Nodes that refuse
    batches are called one request at a time from then on."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30.0,
        retries: int = 4,
        backoff: float = 0.5,
        max_batch: int = 100,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_batch = max_batch
        self.batching = True
        self.requests = 0  # HTTP requests sent, retries included
        self._sleep = sleep
        self._next_id = 0

    def _post(self, body: Any) -> Any:
        payload = json.dumps(body).encode()
        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            retry=retry_if_exception(_worth_retrying) | retry_if_result(_rate_limited),
            wait=self._delay,
            sleep=self._sleep,
            before_sleep=_log_retry,
            retry_error_callback=_last_outcome,
        )
        return retrying(self._send, payload)

    def _send(self, payload: bytes) -> Any:
        """One HTTP request: the decoded answer, or an ``RpcError`` (marked
        ``transient`` when sending it again may succeed)."""
        self.requests += 1
        request = urllib.request.Request(  # noqa: S310 - the operator's node URL
            self.url, data=payload, headers={"Content-Type": "application/json", "Accept": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            failure: RpcError = RpcTransportError(f"HTTP {exc.code} from {self.url}", exc.code)
            failure.transient = exc.code == 429 or exc.code >= 500
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            failure = RpcTransportError(f"{self.url}: {exc}")
            failure.transient = True
        except json.JSONDecodeError:
            failure = RpcError(f"{self.url} answered with something that is not JSON")
            failure.transient = True
        raise failure

    def _delay(self, state: RetryCallState) -> float:
        """Exponential backoff from ``backoff`` with up to 25% jitter."""
        return float(self.backoff * 2 ** (state.attempt_number - 1) * (1 + random.random() / 4))  # jitter

    def _id(self) -> int:
        self._next_id += 1
        return self._next_id

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        answer = self._post({"jsonrpc": "2.0", "id": self._id(), "method": method, "params": list(params)})
        return _result(answer, method)

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Results of ``calls`` in order; a call that failed raises its error."""
        return [_result(answer, method) for answer, (method, _) in zip(self.batch_raw(calls), calls, strict=True)]

    def batch_raw(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        """The response objects of ``calls`` in order (errors left in them)."""
        answers: list[dict[str, Any]] = []
        for start in range(0, len(calls), self.max_batch):
            chunk = calls[start : start + self.max_batch]
            if not self.batching or len(chunk) == 1:
                answers.extend(self._one_by_one(chunk))
                continue
            requests = [{"jsonrpc": "2.0", "id": self._id(), "method": m, "params": list(p)} for m, p in chunk]
            answer = self._post(requests)
            if not isinstance(answer, list):
                # A node or proxy without batch support answers with one error object.
                log.warning("%s does not take JSON-RPC batches; calling one at a time", self.url)
                self.batching = False
                answers.extend(self._one_by_one(chunk))
                continue
            by_id = {a.get("id"): a for a in answer if isinstance(a, dict)}
            for request in requests:
                found = by_id.get(request["id"])
                if found is None or _transient(found.get("error")):
                    found = self._post(request)  # dropped or rate-limited inside the batch
                answers.append(found)
        return answers

    def _one_by_one(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[dict[str, Any]]:
        return [self._post({"jsonrpc": "2.0", "id": self._id(), "method": m, "params": list(p)}) for m, p in calls]


def _transient(error: Any) -> bool:
    return isinstance(error, dict) and error.get("code") in _TRANSIENT_CODES


def _worth_retrying(exc: BaseException) -> bool:
    return isinstance(exc, RpcError) and exc.transient


def _rate_limited(answer: Any) -> bool:
    return isinstance(answer, dict) and _transient(answer.get("error"))


def _log_retry(state: RetryCallState) -> None:
    assert state.outcome is not None and state.next_action is not None
    if state.outcome.failed:
        reason = str(state.outcome.exception())
    else:
        reason = f"rate limited: {state.outcome.result()['error']}"
    log.warning("JSON-RPC request failed (%s); retrying in %.1f s", reason, state.next_action.sleep)


def _last_outcome(state: RetryCallState) -> Any:
    """Out of retries: a rate-limited answer is returned as it is (its error
    is raised by whoever reads its result); a failure is raised."""
    assert state.outcome is not None
    return state.outcome.result()


def _result(answer: Any, method: str) -> Any:
    if not isinstance(answer, dict):
        raise RpcError(f"{method}: malformed response")
    error = answer.get("error")
    if error is not None:
        if isinstance(error, dict):
            raise RpcError(f"{method}: {error.get('message', 'error')}", error.get("code"), error.get("data"))
        raise RpcError(f"{method}: {error}")
    if "result" not in answer:
        raise RpcError(f"{method}: response without a result")
    return answer["result"]


# --- mapping -----------------------------------------------------------------------------


def _quantity(value: Any, name: str) -> int:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise RpcError(f"bad {name}: {value!r}")
    return int(value, 16) if len(value) > 2 else 0


def _address(value: Any, name: str) -> str:
    text = str(value or "").lower()
    if not _ADDRESS_RE.match(text):
        raise RpcError(f"bad {name}: {value!r}")
    return text


def _topic_address(topic: str) -> str | None:
    """The address in a 32-byte topic, None when the upper 12 bytes are not zero."""
    text = topic.lower()
    if len(text) != 66 or text[2:26] != "0" * 24:
        return None
    return "0x" + text[26:]


def _status(receipt: dict[str, Any] | None) -> str:
    if receipt is None:
        return TxStatus.UNKNOWN
    return {"0x1": TxStatus.SUCCESS, "0x0": TxStatus.FAILED}.get(str(receipt.get("status")), TxStatus.UNKNOWN)


@dataclass
class BlockRows:
    transactions: list[TxRow] = field(default_factory=list)
    transfers: list[TransferRow] = field(default_factory=list)
    skipped_logs: int = 0


def map_block(block: dict[str, Any], receipts: dict[str, dict[str, Any]], logs: Sequence[dict[str, Any]]) -> BlockRows:
    """Rows of one block: its transactions and value edges, and the token edges
    of its ``Transfer`` logs. ``receipts`` by transaction hash; transactions
    without one get status unknown and the gas price as fee basis."""
    number = _quantity(block.get("number"), "block number")
    timestamp = _quantity(block.get("timestamp"), "block timestamp") * 1000
    rows = BlockRows()
    hashes: set[str] = set()
    for tx in block.get("transactions") or []:
        if not isinstance(tx, dict):
            raise RpcError("the block has no full transactions (eth_getBlockByNumber needs true)")
        tx_hash = str(tx.get("hash", "")).lower()
        if not _HASH_RE.match(tx_hash):
            raise RpcError(f"bad transaction hash in block {number}: {tx.get('hash')!r}")
        hashes.add(tx_hash)
        receipt = receipts.get(tx_hash)
        status = _status(receipt)
        fee = None
        if receipt is not None and receipt.get("gasUsed") is not None:
            price = receipt.get("effectiveGasPrice") or tx.get("gasPrice")
            if price is not None:
                fee = _quantity(receipt["gasUsed"], "gasUsed") * _quantity(price, "gas price")
        rows.transactions.append(TxRow(tx_hash, number, timestamp, fee, status))
        if status == TxStatus.FAILED:
            continue
        sender = _address(tx.get("from"), "from")
        if tx.get("to"):
            receiver: str | None = _address(tx["to"], "to")
        elif receipt is not None and receipt.get("contractAddress"):
            receiver = _address(receipt["contractAddress"], "contractAddress")
        else:
            receiver = None
        value = _quantity(tx.get("value", "0x0"), "value")
        rows.transfers.append(TransferRow(tx_hash, -1, TransferKind.NATIVE, sender, receiver, value, timestamp))
    for entry in logs:
        topics = [str(t).lower() for t in entry.get("topics") or []]
        tx_hash = str(entry.get("transactionHash", "")).lower()
        data = str(entry.get("data") or "0x")
        if entry.get("removed") or len(topics) != 3 or topics[0] != TRANSFER_TOPIC or tx_hash not in hashes:
            rows.skipped_logs += 1
            continue
        token_sender, token_receiver = _topic_address(topics[1]), _topic_address(topics[2])
        if token_sender is None or token_receiver is None or len(data) != 66:
            rows.skipped_logs += 1
            continue
        rows.transfers.append(
            TransferRow(
                tx_hash,
                _quantity(entry.get("logIndex"), "logIndex"),
                TransferKind.TOKEN,
                token_sender,
                token_receiver,
                int(data, 16),
                timestamp,
                _address(entry.get("address"), "log address"),
            )
        )
    return rows


# --- fetching ---------------------------------------------------------------------------


@dataclass
class EthIngestResult:
    first_block: int | None = None
    last_block: int | None = None
    blocks: int = 0
    transactions: int = 0
    transfers: int = 0
    token_transfers: int = 0
    skipped_logs: int = 0
    rpc_requests: int = 0
    created: dict[str, int] = field(default_factory=dict)


class EthBlockIngester:
    def __init__(self, client: RpcClient, *, batch: int = 20, chain: Chain | None = None) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.client = client
        self.batch = batch
        self.chain = chain or ensure_chain(ETHEREUM)
        self.block_receipts: bool | None = None  # eth_getBlockReceipts available? (learned on first use)

    def head(self) -> int:
        return _quantity(self.client.call("eth_blockNumber"), "block number")

    def _blocks(self, numbers: Sequence[int]) -> list[dict[str, Any]]:
        blocks = self.client.batch([("eth_getBlockByNumber", [hex(n), True]) for n in numbers])
        for number, block in zip(numbers, blocks, strict=True):
            if block is None:
                raise RpcError(f"block {number} does not exist on the node (yet)")
            if _quantity(block.get("number"), "block number") != number:
                raise RpcError(f"asked for block {number}, got {block.get('number')}")
        return blocks

    def _logs(self, low: int, high: int) -> list[dict[str, Any]]:
        """Transfer logs of blocks low..high, halving the range when the node
        refuses one that holds too many."""
        try:
            found = self.client.call(
                "eth_getLogs", [{"fromBlock": hex(low), "toBlock": hex(high), "topics": [TRANSFER_TOPIC]}]
            )
        except RpcError as exc:
            if isinstance(exc, RpcTransportError) or low == high:
                raise
            middle = (low + high) // 2
            log.info("eth_getLogs %d-%d refused (%s); splitting", low, high, exc)
            return self._logs(low, middle) + self._logs(middle + 1, high)
        return list(found or [])

    def _receipts(self, blocks: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        wanted = [b for b in blocks if b.get("transactions")]
        receipts: dict[str, dict[str, Any]] = {}
        if not wanted:
            return receipts
        if self.block_receipts is not False:
            answers = self.client.batch_raw([("eth_getBlockReceipts", [b["number"]]) for b in wanted])
            if all("result" in a and isinstance(a["result"], list) for a in answers):
                self.block_receipts = True
                for answer in answers:
                    for receipt in answer["result"]:
                        receipts[str(receipt.get("transactionHash", "")).lower()] = receipt
                return receipts
            errors = [a.get("error") for a in answers if a.get("error")]
            if self.block_receipts is True or not errors:
                raise RpcError(f"eth_getBlockReceipts failed: {errors[:1] or 'no receipts'}")
            log.info("eth_getBlockReceipts unavailable (%s); reading receipts one by one", errors[0])
            self.block_receipts = False
        hashes = [tx["hash"] for b in wanted for tx in b["transactions"]]
        for tx_hash, receipt in zip(
            hashes, self.client.batch([("eth_getTransactionReceipt", [h]) for h in hashes]), strict=True
        ):
            if receipt is not None:
                receipts[tx_hash.lower()] = receipt
        return receipts

    def fetch(self, low: int, high: int) -> BlockRows:
        """Rows of blocks low..high, read from the node."""
        numbers = list(range(low, high + 1))
        blocks = self._blocks(numbers)
        logs = self._logs(low, high)
        receipts = self._receipts(blocks)
        by_block: dict[int, list[dict[str, Any]]] = {}
        for entry in logs:
            by_block.setdefault(_quantity(entry.get("blockNumber"), "log blockNumber"), []).append(entry)
        rows = BlockRows()
        for number, block in zip(numbers, blocks, strict=True):
            mapped = map_block(block, receipts, by_block.get(number, []))
            rows.transactions.extend(mapped.transactions)
            rows.transfers.extend(mapped.transfers)
            rows.skipped_logs += mapped.skipped_logs
        return rows

    def ranges(self, start: int, end: int) -> Iterator[tuple[int, int]]:
        for low in range(start, end + 1, self.batch):
            yield low, min(end, low + self.batch - 1)

    def ingest(
        self,
        start: int,
        end: int,
        *,
        on_batch: Callable[[EthIngestResult], None] | None = None,
        count_created: bool = True,
    ) -> EthIngestResult:
        """Blocks start..end (inclusive), committed batch by batch.
        ``count_created`` counts the chain's rows before and after (two
        COUNTs over the whole chain: skipped when following the head)."""
        if start < 0 or end < start:
            raise ValueError(f"bad block range {start}..{end}")
        result = EthIngestResult(first_block=start)
        before = _counts(self.chain) if count_created else {}
        for low, high in self.ranges(start, end):
            rows = self.fetch(low, high)
            writer = GraphWriter(self.chain, upsert_transactions=True, batch_size=10**9, publish=True)
            writer.extend(transactions=rows.transactions, transfers=rows.transfers)
            writer.close()
            result.blocks += high - low + 1
            result.last_block = high
            result.transactions += len(rows.transactions)
            result.transfers += len(rows.transfers)
            result.token_transfers += sum(r.kind == TransferKind.TOKEN for r in rows.transfers)
            result.skipped_logs += rows.skipped_logs
            result.rpc_requests = self.client.requests
            if on_batch is not None:
                on_batch(result)
        if count_created:
            after = _counts(self.chain)
            result.created = {key: after[key] - before[key] for key in after}
        return result

    def follow(
        self,
        start: int | None,
        *,
        confirmations: int = 0,
        interval: float = 2.0,
        should_stop: Callable[[], bool] = lambda: False,
        on_batch: Callable[[EthIngestResult], None] | None = None,
    ) -> int:
        """Keep ingesting new blocks (``confirmations`` behind the head) until
        ``should_stop``; returns the next block it would have read."""
        next_block = start if start is not None else max(0, self.head() - confirmations)
        while not should_stop():
            head = self.head() - confirmations
            if head >= next_block:
                self.ingest(next_block, head, on_batch=on_batch, count_created=False)
                next_block = head + 1
                continue
            deadline = time.monotonic() + interval
            while time.monotonic() < deadline and not should_stop():
                time.sleep(min(0.1, interval))
        return next_block


def _counts(chain: Chain) -> dict[str, int]:
    return {
        "transactions": Transaction.objects.filter(chain=chain).count(),
        "transfers": Transfer.objects.filter(tx__chain=chain).count(),
    }
