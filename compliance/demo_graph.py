"""The demo graph's state and primitives (compliance.demo): identifiers,
times and amounts from one seeded generator, and the Ethereum transactions,
Bitcoin wallets and spends the scenes of compliance.demo_ethereum and
compliance.demo_bitcoin are made of."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from compliance.addresses import BITCOIN, ETHEREUM, encode_bitcoin_address
from compliance.ingest import PortRow, TransferRow, TxRow, utxo_edges
from compliance.models import EntityCategory, TransferKind, TxStatus

DAY_MS = 86_400_000
SPAN_DAYS = 90

# (name, country) of the exchanges behind the corridors.
EXCHANGES = (
    ("Northwind Exchange", "US"),
    ("Cambio Azteca", "MX"),
    ("Thames Digital Exchange", "GB"),
    ("Rheinland Krypto", "DE"),
    ("Merlion Digital", "SG"),
    ("Ipanema Bitcoin", "BR"),
    ("Lagos Coin Exchange", "NG"),
    ("Bosphorus Borsa", "TR"),
    ("Sakura Coin", "JP"),
    ("Falcon Gulf Exchange", "AE"),
)
# key -> (name, category, country)
SERVICES: dict[str, tuple[str, str, str | None]] = {
    "dex": ("Swapper DEX", EntityCategory.DEFI, None),
    "bridge": ("ArcSpan Bridge", EntityCategory.BRIDGE, None),
    "casino": ("LuckyDice Casino", EntityCategory.GAMBLING, "CW"),
    "processor": ("PayCircle", EntityCategory.PAYMENT_PROCESSOR, "LT"),
    "nokyc": ("AnonSwap", EntityCategory.NO_KYC_EXCHANGE, "SC"),
    "p2p": ("HodlHands P2P", EntityCategory.P2P_EXCHANGE, None),
    "mixer": ("Fogbank Mixer", EntityCategory.MIXER, None),
    "tumbler": ("Whirlwind CoinJoin", EntityCategory.MIXER, None),
    "market": ("Silk Lanes Market", EntityCategory.DARKNET_MARKET, None),
    "scam": ("Golden Pig Investment Scam", EntityCategory.SCAM, None),
    "ransomware": ("CryptLock Ransomware", EntityCategory.RANSOMWARE, None),
    "hacker": ("ArcSpan Bridge Exploiter", EntityCategory.STOLEN_FUNDS, None),
    "pool": ("Stratum Nine Pool", EntityCategory.MINING_POOL, "IS"),
}
BITCOIN_ONLY = frozenset({"tumbler", "ransomware", "pool"})
# How sure the demo "source" is of each kind of attribution.
CONFIDENCE = {"hot": 95, "deposit": 80, "service": 90, "illicit": 75}


LICIT = {
    EntityCategory.EXCHANGE,
    EntityCategory.DEFI,
    EntityCategory.BRIDGE,
    EntityCategory.GAMBLING,
    EntityCategory.PAYMENT_PROCESSOR,
    EntityCategory.NO_KYC_EXCHANGE,
    EntityCategory.P2P_EXCHANGE,
    EntityCategory.MINING_POOL,
}


@dataclass
class Utxo:
    address: str
    tx_hash: str
    index: int
    value: int
    timestamp: int


@dataclass
class Wallet:
    """A Bitcoin wallet: several addresses, one owner, spent together."""

    addresses: list[str]
    utxos: list[Utxo] = field(default_factory=list)

    def balance(self) -> int:
        return sum(u.value for u in self.utxos)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def demo_tx_hash(chain: str, seed: int, transfers: int, number: int) -> str:
    """The hash of the demo's ``number``-th transaction on ``chain`` (from 1)."""
    digest = _digest("tx", chain, seed, transfers, number).hex()
    return "0x" + digest if chain == ETHEREUM else digest


class DemoGraph:
    """The rows of the demo graph as they are generated, and how they are made."""

    def __init__(self, seed: int, transfers: int, now_ms: int) -> None:
        self.seed = seed
        self.size = transfers
        self.rng = random.Random(f"ledgercore-demo:{seed}:{transfers}")
        self.now = now_ms
        self.start = now_ms - SPAN_DAYS * DAY_MS
        self.counters = {ETHEREUM: 0, BITCOIN: 0}
        self.tx_prefix = {chain: f"tx:{chain}:{seed}:{transfers}:".encode() for chain in self.counters}
        self.labels: list[tuple[str, str, str, int, str]] = []  # chain, address, entity key, confidence, note
        self.entities: dict[str, tuple[str, str, str | None]] = dict(SERVICES)
        for i, (name, country) in enumerate(EXCHANGES):
            self.entities[f"ex{i}"] = (name, EntityCategory.EXCHANGE, country)
        self.eth_txs: list[TxRow] = []
        self.eth_transfers: list[TransferRow] = []
        self.btc_txs: list[TxRow] = []
        self.btc_transfers: list[TransferRow] = []
        self.btc_ports: list[tuple[str, PortRow]] = []  # ("in" | "out", row)
        self.btc_owner: dict[str, Wallet] = {}

    # --- identifiers --------------------------------------------------------------

    def eth_address(self, *parts: object) -> str:
        return "0x" + _digest("eth", self.seed, self.size, *parts)[:20].hex()

    def btc_address(self, *parts: object) -> str:
        raw = _digest("btc", self.seed, self.size, *parts)
        return encode_bitcoin_address("p2pkh" if raw[20] < 64 else "p2wpkh", raw[:20])

    def tx_hash(self, chain: str) -> str:
        # demo_tx_hash, without rebuilding the constant prefix per transaction.
        self.counters[chain] += 1
        digest = hashlib.sha256(self.tx_prefix[chain] + str(self.counters[chain]).encode()).hexdigest()
        return "0x" + digest if chain == ETHEREUM else digest

    def label(self, chain: str, address: str, entity: str, kind: str, note: str = "") -> None:
        self.labels.append((chain, address, entity, CONFIDENCE[kind], note))

    # --- time and amounts ---------------------------------------------------------

    def moment(self, fraction: float) -> int:
        """A time at ``fraction`` of the span, with a little jitter."""
        jitter = self.rng.randint(-3_600_000, 3_600_000)
        return max(self.start, min(self.now, self.start + int(fraction * SPAN_DAYS * DAY_MS) + jitter))

    def later(self, ts: int, max_hours: float = 24.0) -> int:
        return min(self.now, ts + self.rng.randint(60_000, int(max_hours * 3_600_000)))

    def wei(self, median_eth: float) -> int:
        return int(median_eth * self.rng.lognormvariate(0, 0.8) * 1e6) * 10**12

    def usd(self, median: float) -> int:
        return int(median * self.rng.lognormvariate(0, 0.9) * 100) * 10**4  # 6-decimal stablecoins

    def sats(self, median_btc: float) -> int:
        return max(1000, int(median_btc * self.rng.lognormvariate(0, 0.8) * 1e8))

    # --- Ethereum -------------------------------------------------------------------

    def eth_tx(self, ts: int, edges: list[tuple[str, str, int, str]]) -> str:
        """One transaction; each edge is (from, to, value, token contract or "")."""
        tx = self.tx_hash(ETHEREUM)
        gas = 21_000 if all(not token for *_, token in edges) else 65_000
        fee = gas * self.rng.randint(5, 60) * 10**9
        block = 19_000_000 + (ts - self.start) // 12_000
        self.eth_txs.append(TxRow(tx, block, ts, fee, TxStatus.SUCCESS))
        for log, (sender, receiver, value, token) in enumerate(edges):
            index, kind = (log, TransferKind.TOKEN) if token else (-1, TransferKind.NATIVE)
            self.eth_transfers.append(TransferRow(tx, index, kind, sender, receiver, value, ts, token))
        return tx

    def btc_spend(self, wallet: Wallet, ts: int, payments: list[tuple[str, int]], *, change: str | None = None) -> bool:
        """Spend from ``wallet`` (several of its addresses when needed: the
        multi-input signal); False when it cannot pay."""
        needed = sum(v for _, v in payments)
        fee = self.rng.randint(800, 6_000)
        chosen: list[Utxo] = []
        for utxo in sorted(wallet.utxos, key=lambda u: (u.timestamp, u.tx_hash, u.index)):
            if sum(u.value for u in chosen) >= needed + fee:
                break
            chosen.append(utxo)
        total = sum(u.value for u in chosen)
        if total < needed + fee:
            return False
        for utxo in chosen:
            wallet.utxos.remove(utxo)
        ts = min(self.now, max(ts, max(u.timestamp for u in chosen) + 600_000))
        outputs = list(payments)
        rest = total - needed - fee
        if rest > 0:
            outputs.append((change or self.rng.choice(wallet.addresses), rest))
        self.btc_tx(ts, [(u.address, u.value, u.tx_hash, u.index) for u in chosen], outputs, fee)
        return True

    def btc_tx(self, ts: int, inputs: list[tuple[str, int, str, int]], outputs: list[tuple[str, int]], fee: int) -> str:
        tx = self.tx_hash(BITCOIN)
        block = 830_000 + (ts - self.start) // 600_000
        self.btc_txs.append(TxRow(tx, block, ts, fee, TxStatus.SUCCESS))
        for index, (address, value, spent_hash, spent_index) in enumerate(inputs):
            self.btc_ports.append(("in", PortRow(tx, index, address, value, ts, spent_hash, spent_index)))
        for index, (address, value) in enumerate(outputs):
            self.btc_ports.append(("out", PortRow(tx, index, address, value, ts)))
            owner = self.btc_owner.get(address)
            if owner is not None:
                owner.utxos.append(Utxo(address, tx, index, value, ts))
        edges = utxo_edges(tx, ts, [(a, v) for a, v, *_ in inputs], outputs)
        self.btc_transfers.extend(edges or [])
        return tx

    def wallet(self, key: str, size: int, entity: str | None = None, kind: str = "service") -> Wallet:
        wallet = Wallet([self.btc_address(key, k) for k in range(size)])
        for address in wallet.addresses:
            self.btc_owner[address] = wallet
            if entity is not None:
                self.label(BITCOIN, address, entity, kind, "deposit address" if kind == "deposit" else "")
        return wallet
