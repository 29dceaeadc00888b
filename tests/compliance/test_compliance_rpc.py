"""The Ethereum JSON-RPC ingester against a real local node: anvil, from the
npm package ``@foundry-rs/anvil`` (installed into ``.cache/anvil`` by
scripts/bootstrap.sh, or here on first use), started on 127.0.0.1 on a free
port. The tests send real transactions from anvil's unlocked dev accounts
(ETH transfers, a contract deployment, calls of a tiny token contract that
emits ERC-20 Transfer logs, a reverted call), mine them, ingest, and compare
what was stored with what was sent."""

from __future__ import annotations

import asyncio
import glob
import http.server
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection

from compliance.keccak import keccak256
from compliance.models import Transaction, Transfer, TxStatus
from compliance.rpc import TRANSFER_TOPIC, EthBlockIngester, RpcClient, RpcError, RpcTransportError, map_block
from devtools.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
ANVIL_PREFIX = ROOT / ".cache" / "anvil"
ETH = 10**18
GAS = hex(200_000)

pytestmark = pytest.mark.django_db(transaction=True)

# Runtime code of the token: Transfer(caller, calldata[0:32], calldata[32:64]).
#   PUSH1 32 CALLDATALOAD PUSH1 0 MSTORE      memory[0:32] = amount
#   PUSH1 0 CALLDATALOAD CALLER PUSH32 topic   topics: to, from, Transfer
#   PUSH1 32 PUSH1 0 LOG3 STOP                 LOG3(memory[0:32], topic, from, to)
TOKEN_RUNTIME = bytes.fromhex("602035600052600035337f" + TRANSFER_TOPIC[2:] + "60206000a300")
# Init code: copy the runtime (which follows these 12 bytes) to memory and return it.
TOKEN_INIT = bytes.fromhex(f"60{len(TOKEN_RUNTIME):02x}600c60003960{len(TOKEN_RUNTIME):02x}6000f3") + TOKEN_RUNTIME
REVERTER = bytes.fromhex("60006000fd")  # REVERT(0, 0)
REVERTER_ADDRESS = "0x00000000000000000000000000000000000000fd"


# --- the node ----------------------------------------------------------------------------


def _installed_anvil() -> str | None:
    explicit = os.environ.get("ANVIL_BIN")
    if explicit and os.access(explicit, os.X_OK):
        return explicit
    # The platform package's native binary; the package's own bin is a node
    # wrapper that only finds and execs it.
    native = sorted(glob.glob(str(ANVIL_PREFIX / "node_modules/@foundry-rs/anvil-*/bin/anvil")))
    if native and os.access(native[0], os.X_OK):
        return native[0]
    wrapper = ANVIL_PREFIX / "node_modules/.bin/anvil"
    if wrapper.exists() and shutil.which("node"):
        return str(wrapper)
    return shutil.which("anvil")


def anvil_binary() -> str:
    """anvil's path, installing the npm package into .cache/anvil when it is
    not there; skips the test when it cannot be had."""
    found = _installed_anvil()
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("anvil is not installed and npm is not available to install @foundry-rs/anvil")
    try:
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(ANVIL_PREFIX), "@foundry-rs/anvil"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"npm install @foundry-rs/anvil failed: {exc}")
    found = _installed_anvil()
    if done.returncode != 0 or not found:
        pytest.skip(f"npm install @foundry-rs/anvil failed (exit {done.returncode}): {done.stderr[-500:]}")
    return found


@pytest.fixture(scope="module")
def anvil(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = anvil_binary()
    port = free_port()
    log_path = tmp_path_factory.mktemp("anvil") / "anvil.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [binary, "--host", "127.0.0.1", "--port", str(port), "--accounts", "10", "--chain-id", "31337"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    probe = RpcClient(url, retries=0, timeout=2)
    deadline = time.monotonic() + 60
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"anvil exited early:\n{log_path.read_text(errors='replace')}")
            try:
                probe.call("eth_chainId")
                break
            except RpcError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"anvil did not answer:\n{log_path.read_text(errors='replace')}") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Node:
    """The test's side of the node: sending, mining, reading back."""

    def __init__(self, url: str) -> None:
        self.rpc = RpcClient(url, retries=0)
        self.accounts = [a.lower() for a in self.rpc.call("eth_accounts")]

    def send(
        self, sender: str, to: str | None = None, value: int = 0, data: bytes = b"", gas: str | None = None
    ) -> str:
        tx: dict[str, Any] = {"from": sender, "value": hex(value)}
        if to is not None:
            tx["to"] = to
        if data:
            tx["data"] = "0x" + data.hex()
        if gas is not None:
            tx["gas"] = gas
        return str(self.rpc.call("eth_sendTransaction", [tx])).lower()

    def mine(self) -> int:
        self.rpc.call("evm_mine")
        return int(self.rpc.call("eth_blockNumber"), 16)

    def receipt(self, tx_hash: str) -> dict[str, Any]:
        return dict(self.rpc.call("eth_getTransactionReceipt", [tx_hash]))

    def block_time_ms(self, number: int) -> int:
        return int(self.rpc.call("eth_getBlockByNumber", [hex(number), False])["timestamp"], 16) * 1000


def word(value: int | str) -> bytes:
    if isinstance(value, str):
        return bytes(12) + bytes.fromhex(value[2:])
    return value.to_bytes(32, "big")


@pytest.fixture(scope="module")
def scenario(anvil: str) -> dict[str, Any]:
    """Two blocks of several transactions each, then an empty block."""
    node = Node(anvil)
    a = node.accounts
    node.rpc.call("anvil_setCode", [REVERTER_ADDRESS, "0x" + REVERTER.hex()])
    node.rpc.call("evm_setAutomine", [False])
    first = int(node.rpc.call("eth_blockNumber"), 16) + 1
    big = 2**70 + 5  # beyond 64 bits: SQLite must keep it exact
    block1 = {
        "deploy": node.send(a[0], data=TOKEN_INIT, gas=GAS),
        "pay": node.send(a[0], a[1], 3 * ETH // 2),
        "zero": node.send(a[1], a[2], 0),
        "pay2": node.send(a[1], a[2], ETH // 4),
    }
    b1 = node.mine()
    token = str(node.receipt(block1["deploy"])["contractAddress"]).lower()
    block2 = {
        "token1": node.send(a[1], token, data=word(a[3]) + word(1_000)),
        "token2": node.send(a[2], token, data=word(a[4]) + word(big)),
        "reverted": node.send(a[3], REVERTER_ADDRESS, ETH, gas=GAS),
        "pay3": node.send(a[4], a[5], 7 * 10**15),
    }
    b2 = node.mine()
    b3 = node.mine()  # empty
    node.rpc.call("evm_setAutomine", [True])
    hashes = {**block1, **block2}
    receipts = {name: node.receipt(h) for name, h in hashes.items()}
    assert receipts["reverted"]["status"] == "0x0" and receipts["token1"]["status"] == "0x1"
    log_index = {name: int(receipts[name]["logs"][0]["logIndex"], 16) for name in ("token1", "token2")}
    t1, t2 = node.block_time_ms(b1), node.block_time_ms(b2)
    native = [
        ("deploy", a[0], token, 0, t1),
        ("pay", a[0], a[1], 3 * ETH // 2, t1),
        ("zero", a[1], a[2], 0, t1),
        ("pay2", a[1], a[2], ETH // 4, t1),
        ("token1", a[1], token, 0, t2),
        ("token2", a[2], token, 0, t2),
        ("pay3", a[4], a[5], 7 * 10**15, t2),
    ]
    transfers = {(hashes[n], -1, "native", s, r, "", v, ts) for n, s, r, v, ts in native}
    transfers |= {
        (hashes["token1"], log_index["token1"], "token", a[1], a[3], token, 1_000, t2),
        (hashes["token2"], log_index["token2"], "token", a[2], a[4], token, big, t2),
    }
    transactions = {
        h: (
            b1 if name in block1 else b2,
            t1 if name in block1 else t2,
            int(receipts[name]["gasUsed"], 16) * int(receipts[name]["effectiveGasPrice"], 16),
            TxStatus.FAILED if name == "reverted" else TxStatus.SUCCESS,
        )
        for name, h in hashes.items()
    }
    return {
        "url": anvil,
        "first": first,
        "last": b3,
        "blocks": (b1, b2, b3),
        "hashes": hashes,
        "token": token,
        "transfers": transfers,
        "transactions": transactions,
    }


def stored() -> tuple[dict[str, tuple[int | None, int, int | None, str]], set[tuple[Any, ...]]]:
    transactions = {
        h: (block, ts, fee, status)
        for h, block, ts, fee, status in Transaction.objects.filter(chain__code="ethereum").values_list(
            "hash", "block_number", "timestamp", "fee", "status"
        )
    }
    transfers = set(
        Transfer.objects.filter(tx__chain__code="ethereum").values_list(
            "tx__hash",
            "index",
            "kind",
            "from_address__address",
            "to_address__address",
            "asset__contract",
            "value",
            "timestamp",
        )
    )
    return transactions, transfers


# --- tests -------------------------------------------------------------------------------


def test_the_transfer_topic_is_keccak_of_the_event_signature():
    assert "0x" + keccak256(b"Transfer(address,address,uint256)").hex() == TRANSFER_TOPIC


def test_ingesting_the_node_stores_exactly_what_was_sent_and_a_rerun_adds_nothing(scenario):
    ingester = EthBlockIngester(RpcClient(scenario["url"]), batch=2)
    result = ingester.ingest(scenario["first"], scenario["last"])
    assert result.blocks == scenario["last"] - scenario["first"] + 1
    assert ingester.block_receipts is True  # anvil has eth_getBlockReceipts
    transactions, transfers = stored()
    assert transactions == scenario["transactions"]
    assert transfers == scenario["transfers"]
    # The reverted call moved nothing: no edge, but the transaction and its fee are there.
    assert not any(t[0] == scenario["hashes"]["reverted"] for t in transfers)
    assert result.created == {"transactions": 8, "transfers": 9}
    assert result.token_transfers == 2

    again = EthBlockIngester(RpcClient(scenario["url"]), batch=20).ingest(scenario["first"], scenario["last"])
    assert again.created == {"transactions": 0, "transfers": 0}
    assert stored() == (transactions, transfers)


def test_receipts_one_by_one_when_the_node_has_no_block_receipts(scenario):
    ingester = EthBlockIngester(RpcClient(scenario["url"]), batch=5)
    ingester.block_receipts = False
    ingester.ingest(scenario["first"], scenario["last"])
    assert stored() == (scenario["transactions"], scenario["transfers"])


def test_the_management_command_reads_a_range_and_is_idempotent(scenario):
    out = StringIO()
    args = ["--rpc", scenario["url"], "--from", str(scenario["first"]), "--to", str(scenario["last"]), "--batch", "1"]
    call_command("ingest_eth_blocks", *args, stdout=out)
    assert "new: 8 transactions, 9 transfers" in out.getvalue()
    assert stored() == (scenario["transactions"], scenario["transfers"])
    out = StringIO()
    call_command("ingest_eth_blocks", *args, stdout=out)
    assert "new: nothing" in out.getvalue()
    assert stored() == (scenario["transactions"], scenario["transfers"])


def test_following_the_head_picks_up_new_blocks(scenario):
    node = Node(scenario["url"])
    ingester = EthBlockIngester(RpcClient(scenario["url"]))
    start = int(node.rpc.call("eth_blockNumber"), 16) + 1
    stop = threading.Event()
    seen: list[int] = []

    def run() -> None:
        try:
            seen.append(ingester.follow(start, interval=0.05, should_stop=stop.is_set))
        finally:
            connection.close()

    worker = threading.Thread(target=run)
    worker.start()
    try:
        sent = node.send(node.accounts[6], node.accounts[7], 42)  # automine: a block of its own
        deadline = time.monotonic() + 20
        while not Transfer.objects.filter(tx__hash=sent).exists():
            assert time.monotonic() < deadline, "the follower did not ingest the new block"
            time.sleep(0.05)
    finally:
        stop.set()
        worker.join(timeout=20)
    edge = Transfer.objects.get(tx__hash=sent)
    assert (edge.from_address.address, edge.to_address.address, edge.value) == (  # type: ignore[union-attr]
        node.accounts[6],
        node.accounts[7],
        42,
    )
    assert seen and seen[0] > start


def test_a_block_past_the_head_is_an_error(scenario):
    ingester = EthBlockIngester(RpcClient(scenario["url"]))
    head = ingester.head()
    with pytest.raises(RpcError, match="does not exist"):
        ingester.ingest(head + 1000, head + 1000)


# --- the client without a node -----------------------------------------------------------------


class _FlakyNode(http.server.BaseHTTPRequestHandler):
    """Fails the first requests (503, then a rate-limit error), refuses batches,
    then answers eth_blockNumber."""

    failures: list[str] = []
    seen: list[Any] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).seen.append(body)
        mode = type(self).failures.pop(0) if type(self).failures else "ok"
        if mode == "503":
            self.send_response(503)
            self.end_headers()
            return
        if isinstance(body, list):
            answer: Any = {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "batch not supported"}}
        elif mode == "limited":
            answer = {"jsonrpc": "2.0", "id": body["id"], "error": {"code": -32005, "message": "limit exceeded"}}
        else:
            answer = {"jsonrpc": "2.0", "id": body["id"], "result": hex(100 + len(body["params"]))}
        raw = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def flaky_node() -> Iterator[str]:
    _FlakyNode.failures = []
    _FlakyNode.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FlakyNode)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.django_db(transaction=False)
def test_the_client_retries_transient_failures_and_falls_back_from_batches(flaky_node):
    pauses: list[float] = []
    client = RpcClient(flaky_node, retries=3, backoff=0.01, sleep=pauses.append)
    _FlakyNode.failures = ["503", "limited"]
    assert client.call("eth_blockNumber") == hex(100)
    assert len(pauses) == 2 and pauses[1] > pauses[0]
    assert client.batch([("eth_blockNumber", []), ("eth_getBlockByNumber", ["0x1", True])]) == [hex(100), hex(102)]
    assert client.batching is False
    _FlakyNode.failures = ["503"] * 5
    with pytest.raises(RpcTransportError, match="HTTP 503"):
        client.call("eth_blockNumber")


@pytest.mark.django_db(transaction=False)
def test_mapping_skips_logs_that_are_not_erc20_transfers():
    tx = "0x" + "ab" * 32
    sender, receiver, token = "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20
    block = {
        "number": "0x10",
        "timestamp": "0x5",
        "transactions": [{"hash": tx, "from": sender, "to": token, "value": "0x0", "gasPrice": "0x2"}],
    }
    receipts = {tx: {"status": "0x1", "gasUsed": "0x3"}}
    topic = "0x" + "00" * 12 + "{}"
    erc20 = {
        "transactionHash": tx,
        "logIndex": "0x0",
        "address": token,
        "topics": [TRANSFER_TOPIC, topic.format(sender[2:]), topic.format(receiver[2:])],
        "data": "0x" + "00" * 31 + "07",
    }
    nft = {**erc20, "logIndex": "0x1", "topics": [*erc20["topics"], "0x" + "00" * 31 + "01"], "data": "0x"}
    removed = {**erc20, "logIndex": "0x2", "removed": True}
    rows = map_block(block, receipts, [erc20, nft, removed])
    assert rows.transactions[0].fee == 6 and rows.transactions[0].timestamp == 5000
    assert [(r.position, r.kind, r.value) for r in rows.transfers] == [(-1, "native", 0), (0, "token", 7)]
    assert rows.skipped_logs == 2


# --- address rooms: new transactions pushed as they are ingested -------------------------


async def mined(node: Node, tx_hash: str) -> int:
    """The block of ``tx_hash``, mined by the node (it mines each transaction
    when it arrives; the receipt may take a moment)."""
    for _ in range(200):
        receipt = node.rpc.call("eth_getTransactionReceipt", [tx_hash])
        if receipt is not None:
            return int(receipt["blockNumber"], 16)
        node.rpc.call("evm_mine")
        await asyncio.sleep(0.05)
    raise AssertionError(f"{tx_hash} was not mined")


async def test_address_rooms_get_new_transactions_as_the_ingester_stores_them(anvil, live_server_url):
    """Subscribers of address:ethereum:<address> (any spelling: one room, the
    address's normal form) get address_transactions_update with the new
    transactions of that address, entries as address_transactions pages them;
    after unsubscribing (in another spelling) nothing more comes."""
    from channels.db import database_sync_to_async

    from compliance.addresses import ethereum_checksum, normalize_chain_address
    from compliance.history import address_transactions
    from tests.wsclient import connected, unique

    node = Node(anvil)
    sender, receiver = node.accounts[6], node.accounts[7]
    canonical = {a: normalize_chain_address("ethereum", a) for a in (sender, receiver)}
    mixed = ethereum_checksum(receiver)  # EIP-55: another spelling of the same address
    assert mixed != canonical[receiver]
    watcher = await connected(live_server_url, unique("watcher"))
    joined = await watcher.request("subscribe", {"room": f"address:ethereum:{mixed}"})
    assert joined["data"]["room"] == f"address:ethereum:{canonical[receiver]}"
    other = await connected(live_server_url, unique("watcher"))
    await other.request("subscribe", {"room": f"address:ethereum:{canonical[sender]}"})

    ingester = await database_sync_to_async(EthBlockIngester)(RpcClient(anvil), batch=5)
    paid = node.send(sender, receiver, ETH // 8)
    block = await mined(node, paid)
    await database_sync_to_async(ingester.ingest)(block, block, count_created=False)

    incoming = await watcher.expect("address_transactions_update", timeout=10)
    page = await database_sync_to_async(address_transactions)("ethereum", canonical[receiver], limit=5)
    assert incoming["data"] == {"chain": "ethereum", "address": canonical[receiver], "transactions": page.transactions}
    assert [(t["hash"], t["direction"], t["amount"]) for t in incoming["data"]["transactions"]] == [
        (paid, "in", "0.125")
    ]
    outgoing = await other.expect("address_transactions_update", timeout=10)
    assert [(t["hash"], t["direction"]) for t in outgoing["data"]["transactions"]] == [(paid, "out")]

    left = await watcher.request("unsubscribe", {"room": f"address:ethereum:0x{receiver[2:].upper()}"})
    assert left["data"]["room"] == f"address:ethereum:{canonical[receiver]}"
    again = node.send(sender, receiver, ETH // 16)
    block = await mined(node, again)
    await database_sync_to_async(ingester.ingest)(block, block, count_created=False)
    assert [
        t["hash"] for t in (await other.expect("address_transactions_update", timeout=10))["data"]["transactions"]
    ] == [again]
    with pytest.raises(AssertionError, match="no address_transactions_update"):
        await watcher.expect("address_transactions_update", timeout=1.0)
    await watcher.close()
    await other.close()
