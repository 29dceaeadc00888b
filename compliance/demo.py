"""Demo compliance data for ``seed_demo``: a synthetic but plausible
transaction graph on ``ethereum`` and ``bitcoin``, so that every signal of
the address analysis, the transaction pages and the cross-border flows can be
seen on a fresh checkout.

What is in it (names are invented; only the OFAC addresses are real):
- exchanges in ten countries with hot wallets and labelled deposit
  addresses; deposits, sweeps, withdrawals and exchange-to-exchange
  rebalancing in ETH, USDT and USDC (the cross-border corridors);
- ordinary users paying each other, swapping on a DEX, gambling, bridging,
  using a payment processor, a no-KYC exchange and a P2P desk;
- an Ethereum mixer with fixed denominations and Bitcoin CoinJoins (which the
  clustering skips), a darknet market with vendors cashing out, a
  pig-butchering scam, a ransomware strain, a bridge exploit whose stolen
  funds are laundered through the mixer and peeling chains;
- real OFAC-listed addresses, read from the imported sanctions labels (never
  written in code), paying and paid by ordinary users, so that direct and
  indirect sanctions exposure appears; none are planted when the lists have
  not been imported;
- Bitcoin wallets that spend several of their addresses together, which is
  what the multi-input clustering finds.

Everything is a pure function of ``(seed, transfers)``: hashes and addresses
come from a hash of the seed, amounts and choices from a seeded generator.
Timestamps span the 90 days before the first run. The whole graph is written
in one transaction, so a second run finds it complete (its first transaction
exists) and writes nothing.
"""

from __future__ import annotations

import hashlib
import random
import time
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.utils import timezone

from compliance.addresses import BITCOIN, ETHEREUM, encode_bitcoin_address
from compliance.batching import chunked
from compliance.chains import KNOWN_TOKENS
from compliance.ingest import GraphWriter, PortRow, TransferRow, TxRow, insert_rows, utxo_edges
from compliance.models import (
    Address,
    AddressLabel,
    Chain,
    Entity,
    EntityCategory,
    Transaction,
    Transfer,
    TransferKind,
    TxStatus,
)
from compliance.services import ensure_chain

DAY_MS = 86_400_000
SPAN_DAYS = 90
DEMO_SOURCE = "demo"
ETHEREUM_SHARE = 0.65
MAX_OFAC_PER_CHAIN = 6

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


@dataclass(frozen=True)
class DemoSummary:
    written: bool  # False: the same graph was already there
    transfers: dict[str, int]
    transactions: dict[str, int]
    addresses: dict[str, int]
    entities: int
    labels: int
    ofac_planted: dict[str, list[str]]
    seconds: float

    @property
    def total_transfers(self) -> int:
        return sum(self.transfers.values())


@dataclass
class _Utxo:
    address: str
    tx_hash: str
    index: int
    value: int
    timestamp: int


@dataclass
class _Wallet:
    """A Bitcoin wallet: several addresses, one owner, spent together."""

    addresses: list[str]
    utxos: list[_Utxo] = field(default_factory=list)

    def balance(self) -> int:
        return sum(u.value for u in self.utxos)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256(":".join(str(p) for p in parts).encode()).digest()


def demo_tx_hash(chain: str, seed: int, transfers: int, number: int) -> str:
    """The hash of the demo's ``number``-th transaction on ``chain`` (from 1)."""
    digest = _digest("tx", chain, seed, transfers, number).hex()
    return "0x" + digest if chain == ETHEREUM else digest


class _Builder:
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
        self.btc_owner: dict[str, _Wallet] = {}

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

    def build_ethereum(self, target: int, ofac: list[str]) -> None:
        rng = self.rng
        usdt, usdc = (t.contract.lower() for t in KNOWN_TOKENS[ETHEREUM][:2])
        users = [self.eth_address("user", i) for i in range(max(200, target // 12))]
        hot = {i: [self.eth_address("hot", i, k) for k in range(2)] for i in range(len(EXCHANGES))}
        home = {u: rng.randrange(len(EXCHANGES)) for u in users}
        service = {key: [self.eth_address(key, k) for k in range(3)] for key in SERVICES if key not in BITCOIN_ONLY}
        for i, wallets in hot.items():
            for address in wallets:
                self.label(ETHEREUM, address, f"ex{i}", "hot")
        for key, addresses in service.items():
            kind = "illicit" if SERVICES[key][1] not in _LICIT else "service"
            for address in addresses:
                self.label(ETHEREUM, address, key, kind)

        known_deposits: dict[tuple[int, str], str] = {}

        def deposit_address(exchange: int, owner: str) -> str:
            """The owner's deposit address at an exchange (one per pair, as
            exchanges issue them)."""
            address = known_deposits.get((exchange, owner))
            if address is None:
                address = known_deposits[(exchange, owner)] = self.eth_address("deposit", exchange, owner)
                self.label(ETHEREUM, address, f"ex{exchange}", "deposit", "deposit address")
            return address

        def asset() -> tuple[int, str]:
            pick = rng.random()
            if pick < 0.5:
                return self.wei(0.4), ""
            return self.usd(600), usdt if pick < 0.8 else usdc

        def cash_out(sender: str, ts: int, value: int, token: str) -> None:
            exchange = rng.randrange(len(EXCHANGES))
            self.eth_tx(ts, [(sender, deposit_address(exchange, sender), value, token)])

        def peel(origin: str, ts: int, value: int, token: str, hops: int, tag: str) -> None:
            """A peeling chain: each hop sends a slice to an exchange and the
            rest to a fresh address of the same owner."""
            current = origin
            for hop in range(hops):
                ts = self.later(ts, 6)
                slice_ = value * rng.randint(4, 12) // 100
                nxt = self.eth_address("peel", tag, hop)
                exchange = rng.randrange(len(EXCHANGES))
                self.eth_tx(ts, [(current, deposit_address(exchange, current), slice_, token)])
                ts = self.later(ts, 2)
                value -= slice_
                self.eth_tx(ts, [(current, nxt, value, token)])
                current = nxt

        # Scripted illicit activity first, in the first 80% of the span so
        # that its later hops still fall before now.
        scale = max(1, target // 10_000)
        for n in range(20 * scale):  # mixer: fixed denominations in, fresh addresses out
            ts = self.moment(rng.random() * 0.8)
            denomination = rng.choice((1, 10)) * 10**17 * rng.choice((1, 10))
            self.eth_tx(ts, [(rng.choice(users), rng.choice(service["mixer"]), denomination, "")])
            fresh = self.eth_address("mixed", n)
            ts = self.later(ts, 48)
            self.eth_tx(ts, [(rng.choice(service["mixer"]), fresh, denomination, "")])
            cash_out(fresh, self.later(ts, 24), denomination * 99 // 100, "")
        for n in range(25 * scale):  # pig-butchering scam: victims pay USDT
            ts = self.moment(rng.random() * 0.7)
            self.eth_tx(ts, [(rng.choice(users), service["scam"][n % 2], self.usd(3_000), usdt)])
        for n in range(3 * scale):  # the scam launders: mixer, bridge, no-KYC, peeling
            ts = self.moment(0.7 + rng.random() * 0.05)
            self.eth_tx(ts, [(service["scam"][0], service["scam"][2], self.usd(40_000), usdt)])
            self.eth_tx(self.later(ts), [(service["scam"][2], rng.choice(service["bridge"]), self.usd(15_000), usdt)])
            self.eth_tx(self.later(ts), [(service["scam"][2], rng.choice(service["nokyc"]), self.usd(8_000), usdt)])
            peel(service["scam"][2], self.later(ts), self.usd(20_000), usdt, 8, f"scam{n}")
        exploit = self.moment(0.3)  # bridge exploit: stolen ETH split, mixed, peeled
        self.eth_tx(exploit, [(service["bridge"][0], service["hacker"][0], 2_400 * 10**18, "")])
        for n in range(12):
            ts = self.later(exploit, 12)
            splinter = self.eth_address("splinter", n)
            self.eth_tx(ts, [(service["hacker"][0], splinter, 200 * 10**18, "")])
            if n % 3 == 0:
                self.eth_tx(self.later(ts), [(splinter, service["mixer"][n % 3], 100 * 10**18, "")])
                peel(splinter, self.later(ts), 100 * 10**18, "", 6, f"hack{n}")
            elif n % 3 == 1:
                self.eth_tx(self.later(ts), [(splinter, service["dex"][0], 200 * 10**18, "")])
            else:
                peel(splinter, self.later(ts), 200 * 10**18, "", 10, f"hack{n}")
        for n in range(10 * scale):  # darknet market paid in USDT, vendors cash out
            ts = self.moment(rng.random() * 0.8)
            self.eth_tx(ts, [(rng.choice(users), service["market"][0], self.usd(150), usdt)])
            vendor = self.eth_address("vendor", n % 7)
            self.eth_tx(self.later(ts), [(service["market"][0], vendor, self.usd(120), usdt)])
            cash_desk = rng.choice(service["p2p"] + service["nokyc"])
            self.eth_tx(self.later(ts, 72), [(vendor, cash_desk, self.usd(100), usdt)])
        for n, listed in enumerate(ofac):  # sanctioned addresses meet ordinary users
            for _ in range(4):
                ts = self.moment(rng.random() * 0.8)
                payee = rng.choice(users)
                value, token = asset()
                self.eth_tx(ts, [(listed, payee, value, token)])  # direct exposure (incoming)
                onward = rng.choice(users)
                self.eth_tx(self.later(ts), [(payee, onward, value * rng.randint(50, 90) // 100, token)])
                cash_out(onward, self.later(ts, 48), value // 3, token)  # indirect, then an exchange
                self.eth_tx(self.moment(rng.random()), [(rng.choice(users), listed, self.wei(0.2), "")])
            peel(listed, self.moment(0.5), self.wei(30), "", 5, f"ofac{n}")

        # Ordinary activity fills the rest, spread over the whole span.
        steps = 0
        while len(self.eth_transfers) < target:
            steps += 1
            ts = self.moment(rng.random())
            user = rng.choice(users)
            pick = rng.random()
            if pick < 0.24:  # deposit, later swept to a hot wallet
                value, token = asset()
                exchange = home[user] if rng.random() < 0.8 else rng.randrange(len(EXCHANGES))
                address = deposit_address(exchange, user)
                self.eth_tx(ts, [(user, address, value, token)])
                if rng.random() < 0.6:
                    self.eth_tx(self.later(ts, 12), [(address, rng.choice(hot[exchange]), value, token)])
            elif pick < 0.44:  # withdrawal
                value, token = asset()
                self.eth_tx(ts, [(rng.choice(hot[home[user]]), user, value, token)])
            elif pick < 0.58:  # user to user
                value, token = asset()
                self.eth_tx(ts, [(user, rng.choice(users), value // 4, token)])
            elif pick < 0.68:  # swap ETH for USDC on the DEX, one transaction, two edges
                pool = rng.choice(service["dex"])
                amount = self.wei(0.5)
                self.eth_tx(ts, [(user, pool, amount, ""), (pool, user, amount * 3_000 // 10**12, usdc)])
            elif pick < 0.78:  # exchange-to-exchange rebalancing across borders
                source, target_exchange = rng.sample(range(len(EXCHANGES)), 2)
                value, token = self.usd(80_000), rng.choice((usdt, usdc))
                if rng.random() < 0.3:
                    value, token = self.wei(40), ""
                receiver = deposit_address(target_exchange, f"treasury-{source}")
                self.eth_tx(ts, [(rng.choice(hot[source]), receiver, value, token)])
            elif pick < 0.85:  # gambling
                casino = rng.choice(service["casino"])
                self.eth_tx(ts, [(user, casino, self.wei(0.1), "")])
                if rng.random() < 0.4:
                    self.eth_tx(self.later(ts, 2), [(casino, user, self.wei(0.15), "")])
            elif pick < 0.90:  # bridge out
                self.eth_tx(ts, [(user, rng.choice(service["bridge"]), self.usd(900), usdc)])
            elif pick < 0.95:  # paying a merchant through the processor
                self.eth_tx(ts, [(user, rng.choice(service["processor"]), self.usd(60), usdc)])
            else:  # no-KYC exchange or P2P desk
                venue = rng.choice(service["nokyc"] + service["p2p"])
                value, token = asset()
                self.eth_tx(ts, [(user, venue, value, token)] if rng.random() < 0.5 else [(venue, user, value, token)])

    # --- Bitcoin --------------------------------------------------------------------

    def btc_spend(
        self, wallet: _Wallet, ts: int, payments: list[tuple[str, int]], *, change: str | None = None
    ) -> bool:
        """Spend from ``wallet`` (several of its addresses when needed: the
        multi-input signal); False when it cannot pay."""
        needed = sum(v for _, v in payments)
        fee = self.rng.randint(800, 6_000)
        chosen: list[_Utxo] = []
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
        self._btc_tx(ts, [(u.address, u.value, u.tx_hash, u.index) for u in chosen], outputs, fee)
        return True

    def _btc_tx(
        self, ts: int, inputs: list[tuple[str, int, str, int]], outputs: list[tuple[str, int]], fee: int
    ) -> str:
        tx = self.tx_hash(BITCOIN)
        block = 830_000 + (ts - self.start) // 600_000
        self.btc_txs.append(TxRow(tx, block, ts, fee, TxStatus.SUCCESS))
        for index, (address, value, spent_hash, spent_index) in enumerate(inputs):
            self.btc_ports.append(("in", PortRow(tx, index, address, value, ts, spent_hash, spent_index)))
        for index, (address, value) in enumerate(outputs):
            self.btc_ports.append(("out", PortRow(tx, index, address, value, ts)))
            owner = self.btc_owner.get(address)
            if owner is not None:
                owner.utxos.append(_Utxo(address, tx, index, value, ts))
        edges = utxo_edges(tx, ts, [(a, v) for a, v, *_ in inputs], outputs)
        self.btc_transfers.extend(edges or [])
        return tx

    def wallet(self, key: str, size: int, entity: str | None = None, kind: str = "service") -> _Wallet:
        wallet = _Wallet([self.btc_address(key, k) for k in range(size)])
        for address in wallet.addresses:
            self.btc_owner[address] = wallet
            if entity is not None:
                self.label(BITCOIN, address, entity, kind, "deposit address" if kind == "deposit" else "")
        return wallet

    def build_bitcoin(self, target: int, ofac: list[str]) -> None:
        rng = self.rng
        target = max(0, target)
        users = [self.wallet(f"user{i}", rng.randint(1, 4)) for i in range(max(100, target // 25))]
        exchanges = [self.wallet(f"exhot{i}", 3, f"ex{i}", "hot") for i in range(len(EXCHANGES))]
        deposit_wallets = [self.wallet(f"exdep{i}", 40, f"ex{i}", "deposit") for i in range(len(EXCHANGES))]
        pool = self.wallet("pool", 2, "pool")
        market = self.wallet("market", 6, "market", "illicit")
        ransom = self.wallet("ransom", 4, "ransomware", "illicit")
        casino = self.wallet("casino", 2, "casino")
        nokyc = self.wallet("nokyc", 3, "nokyc")
        tumbler_fee = self.wallet("tumbler", 1, "tumbler", "illicit")
        sanctioned = [_Wallet([address]) for address in ofac]
        for wallet in sanctioned:
            self.btc_owner[wallet.addresses[0]] = wallet

        # Newly mined coins fund the pool, which pays the exchanges.
        blocks = 60 + target // 500
        for n in range(blocks):
            ts = self.moment(n / blocks * 0.1)
            self._btc_tx(ts, [], [(rng.choice(pool.addresses), 312_500_000 + rng.randint(0, 30_000_000))], 0)
        for n, exchange in enumerate(exchanges * 6):
            self.btc_spend(pool, self.moment(0.1 + n * 0.001), [(rng.choice(exchange.addresses), 2_800_000_000)])

        def deposit(wallet: _Wallet, ts: int, exchange: int, value: int) -> bool:
            return self.btc_spend(wallet, ts, [(rng.choice(deposit_wallets[exchange].addresses), value)])

        def peel(wallet: _Wallet, ts: int, hops: int, tag: str) -> None:
            """Peeling chain: a slice to an exchange or the no-KYC desk per hop,
            the change to a fresh address of the same owner."""
            for hop in range(hops):
                if not wallet.utxos:
                    return
                balance = wallet.balance()
                fresh = self.btc_address("peel", tag, hop)
                target_wallet = deposit_wallets[rng.randrange(len(EXCHANGES))] if hop % 4 else nokyc
                slice_ = balance * rng.randint(5, 12) // 100
                wallet.addresses.append(fresh)
                self.btc_owner[fresh] = wallet
                if not self.btc_spend(wallet, ts, [(rng.choice(target_wallet.addresses), slice_)], change=fresh):
                    return
                wallet.utxos = [u for u in wallet.utxos if u.address == fresh]
                ts = self.later(ts, 4)

        # Users get coins from exchanges.
        for n, user in enumerate(users):
            exchange = exchanges[n % len(exchanges)]
            self.btc_spend(exchange, self.moment(0.12 + 0.05 * n / len(users)), [(user.addresses[0], self.sats(0.4))])

        # Illicit flows.
        scale = max(1, target // 10_000)
        for _ in range(15 * scale):  # ransom payments, then laundering by peeling
            victim = rng.choice(users)
            ransom_address = rng.choice(ransom.addresses)
            self.btc_spend(victim, self.moment(0.2 + rng.random() * 0.4), [(ransom_address, self.sats(0.05))])
        peel(ransom, self.moment(0.65), 20, "ransom")
        for _ in range(30 * scale):  # market purchases; vendors paid out of several market addresses at once
            buyer = rng.choice(users)
            shop = rng.choice(market.addresses)
            self.btc_spend(buyer, self.moment(0.2 + rng.random() * 0.6), [(shop, self.sats(0.01))])
        vendors = [self.wallet(f"vendor{k}", 2) for k in range(6)]
        for n, vendor in enumerate(vendors * 2):
            self.btc_spend(market, self.moment(0.82 + n * 0.003), [(vendor.addresses[0], self.sats(0.02))])
            self.btc_spend(vendor, self.moment(0.86 + n * 0.003), [(rng.choice(nokyc.addresses), self.sats(0.008))])
        for n, wallet in enumerate(sanctioned):  # real OFAC addresses, funded by the market
            self.btc_spend(market, self.moment(0.3 + n * 0.01), [(wallet.addresses[0], self.sats(0.05))])
            for k in range(3):
                payee = rng.choice(users)
                paid_at = self.moment(0.35 + n * 0.01 + k * 0.02)
                if self.btc_spend(wallet, paid_at, [(payee.addresses[0], self.sats(0.004))]):
                    venue = rng.randrange(len(EXCHANGES))
                    deposit(payee, self.moment(0.5 + rng.random() * 0.3), venue, self.sats(0.002))
            self.btc_spend(rng.choice(users), self.moment(0.6 + n * 0.01), [(wallet.addresses[0], self.sats(0.001))])
            peel(wallet, self.moment(0.7 + n * 0.01), 4, f"ofac{n}")
        for n in range(4 * scale):  # CoinJoins: five users, five equal outputs to fresh addresses
            ts = self.moment(0.4 + rng.random() * 0.4)
            participants = rng.sample(users, 5)
            denomination = 5_000_000
            inputs: list[tuple[str, int, str, int]] = []
            outputs: list[tuple[str, int]] = []
            for k, user in enumerate(participants):
                utxo = max(user.utxos, key=lambda u: u.value, default=None)
                if utxo is None or utxo.value < denomination + 20_000:
                    continue
                user.utxos.remove(utxo)
                ts = max(ts, utxo.timestamp + 600_000)
                inputs.append((utxo.address, utxo.value, utxo.tx_hash, utxo.index))
                fresh = self.btc_address("mixed", n, k)
                user.addresses.append(fresh)
                self.btc_owner[fresh] = user
                outputs.append((fresh, denomination))
                outputs.append((user.addresses[0], utxo.value - denomination - 10_000))
            if len(inputs) >= 3:
                outputs.append((tumbler_fee.addresses[0], 5_000 * len(inputs)))
                self._btc_tx(min(ts, self.now), inputs, outputs, 5_000 * len(inputs))

        # Ordinary activity.
        while len(self.btc_transfers) < target:
            ts = self.moment(0.15 + rng.random() * 0.85)
            user = rng.choice(users)
            pick = rng.random()
            ok = False
            if pick < 0.3:
                ok = deposit(user, ts, rng.randrange(len(EXCHANGES)), self.sats(0.05))
            elif pick < 0.5:
                exchange = rng.choice(exchanges)
                ok = self.btc_spend(exchange, ts, [(rng.choice(user.addresses), self.sats(0.1))])
            elif pick < 0.7:
                payee = rng.choice(users)
                ok = self.btc_spend(user, ts, [(rng.choice(payee.addresses), self.sats(0.02))])
            elif pick < 0.8:  # an exchange sweeps several deposit addresses into its hot wallet
                index = rng.randrange(len(EXCHANGES))
                wallet = deposit_wallets[index]
                if len(wallet.utxos) >= 3:
                    value = sum(u.value for u in wallet.utxos[:3]) - 4_000
                    ok = self.btc_spend(wallet, ts, [(rng.choice(exchanges[index].addresses), value)])
            elif pick < 0.9:
                ok = self.btc_spend(user, ts, [(rng.choice(casino.addresses), self.sats(0.005))])
                if ok and rng.random() < 0.5:
                    self.btc_spend(casino, self.later(ts), [(user.addresses[0], self.sats(0.006))])
            else:
                ok = self.btc_spend(user, ts, [(rng.choice(nokyc.addresses), self.sats(0.01))])
            if not ok:  # the user buys coins; an exchange that ran dry is refilled by the pool
                exchange = rng.choice(exchanges)
                if not self.btc_spend(exchange, ts, [(user.addresses[0], self.sats(0.3))]):
                    self._btc_tx(ts, [], [(rng.choice(pool.addresses), 312_500_000)], 0)
                    self.btc_spend(pool, ts, [(rng.choice(exchange.addresses), 300_000_000)])


_LICIT = {
    EntityCategory.EXCHANGE,
    EntityCategory.DEFI,
    EntityCategory.BRIDGE,
    EntityCategory.GAMBLING,
    EntityCategory.PAYMENT_PROCESSOR,
    EntityCategory.NO_KYC_EXCHANGE,
    EntityCategory.P2P_EXCHANGE,
    EntityCategory.MINING_POOL,
}


def _ofac_addresses(chain: str) -> list[str]:
    """Up to a handful of actively listed OFAC addresses of the chain, spread
    over the sorted list so that every run picks the same ones."""
    listed = sorted(
        set(
            AddressLabel.objects.filter(
                source__startswith="ofac:", delisted_at=None, address__chain__code=chain
            ).values_list("address__address", flat=True)
        )
    )
    if len(listed) <= MAX_OFAC_PER_CHAIN:
        return listed
    step = len(listed) / MAX_OFAC_PER_CHAIN
    return [listed[int(i * step)] for i in range(MAX_OFAC_PER_CHAIN)]


def _write(chain: Chain, txs: list[TxRow], transfers: list[TransferRow], ports: list[tuple[str, PortRow]]) -> None:
    writer = GraphWriter(chain, batch_size=10**9)
    writer.extend(
        transactions=txs,
        transfers=transfers,
        inputs=[p for side, p in ports if side == "in"],
        outputs=[p for side, p in ports if side == "out"],
    )
    writer.close()


def _write_labels(builder: _Builder, chains: dict[str, Chain], version: str) -> int:
    entities: dict[str, Entity] = {}
    for key, (name, category, country) in builder.entities.items():
        entity, _ = Entity.objects.get_or_create(
            name=name,
            defaults={"category": category, "country": country, "description": "Synthetic demo entity."},
        )
        entities[key] = entity
    listed_at = timezone.now()
    wanted: dict[tuple[str, str, str], tuple[int, str]] = {}
    for code, address, key, confidence, note in builder.labels:
        wanted[(code, address, key)] = (confidence, note)
    ids: dict[tuple[str, str], int] = {}
    for code, chain in chains.items():
        addresses = sorted({a for c, a, _ in wanted if c == code})
        insert_rows(Address, ("chain_id", "address"), ((chain.pk, a) for a in addresses))
        for chunk in chunked(addresses):
            for pk, address in Address.objects.filter(chain=chain, address__in=chunk).values_list("id", "address"):
                ids[(code, address)] = pk
    insert_rows(
        AddressLabel,
        ("address_id", "entity_id", "source", "source_version", "confidence", "listed_at", "note", "created_at"),
        (
            (ids[(code, address)], entities[key].pk, DEMO_SOURCE, version, confidence, listed_at, note, listed_at)
            for (code, address, key), (confidence, note) in wanted.items()
        ),
    )
    return len(wanted)


def seed_compliance_data(transfers: int = 100_000, seed: int = 7) -> DemoSummary:
    """Write the demo graph (at least ``transfers`` valued transfers over both
    chains) unless it is already there. Reads the OFAC addresses to plant from
    the imported sanctions labels: import the lists first.

    The graph is written in one transaction, so finding its first transaction
    on both chains means it is complete: then nothing is generated or written
    and the summary counts what the database holds for both chains."""
    started = time.perf_counter()
    chains = {ETHEREUM: ensure_chain(ETHEREUM), BITCOIN: ensure_chain(BITCOIN)}
    if all(
        Transaction.objects.filter(chain=chain, hash=demo_tx_hash(code, seed, transfers, 1)).exists()
        for code, chain in chains.items()
    ):
        return DemoSummary(
            written=False,
            transfers={c: Transfer.objects.filter(tx__chain=chain).count() for c, chain in chains.items()},
            transactions={c: Transaction.objects.filter(chain=chain).count() for c, chain in chains.items()},
            addresses={c: Address.objects.filter(chain=chain).count() for c, chain in chains.items()},
            entities=Entity.objects.filter(labels__source=DEMO_SOURCE).distinct().count(),
            labels=AddressLabel.objects.filter(source=DEMO_SOURCE, delisted_at=None).count(),
            ofac_planted={},
            seconds=time.perf_counter() - started,
        )
    ofac = {code: _ofac_addresses(code) for code in chains}
    now_ms = (int(time.time() * 1000) // 60_000) * 60_000
    builder = _Builder(seed, transfers, now_ms)
    builder.build_ethereum(int(transfers * ETHEREUM_SHARE), ofac[ETHEREUM])
    builder.build_bitcoin(transfers - len(builder.eth_transfers), ofac[BITCOIN])
    with transaction.atomic():
        _write(chains[ETHEREUM], builder.eth_txs, builder.eth_transfers, [])
        _write(chains[BITCOIN], builder.btc_txs, builder.btc_transfers, builder.btc_ports)
        labels = _write_labels(builder, chains, f"seed-{seed}-{transfers}")
    addresses: dict[str, set[str]] = {ETHEREUM: set(), BITCOIN: set()}
    for chain, rows in ((ETHEREUM, builder.eth_transfers), (BITCOIN, builder.btc_transfers)):
        for row in rows:
            addresses[chain].update(a for a in (row.from_address, row.to_address) if a)
    return DemoSummary(
        written=True,
        transfers={ETHEREUM: len(builder.eth_transfers), BITCOIN: len(builder.btc_transfers)},
        transactions={ETHEREUM: len(builder.eth_txs), BITCOIN: len(builder.btc_txs)},
        addresses={chain: len(found) for chain, found in addresses.items()},
        entities=len(builder.entities),
        labels=labels,
        ofac_planted=ofac,
        seconds=time.perf_counter() - started,
    )


def seed_compliance_demo(**kwargs: Any) -> DemoSummary:
    """What ``seed_demo`` runs: the OFAC lists (when the folder is there),
    then the demo graph with real sanctioned addresses planted in it."""
    from compliance.ofac import default_ofac_directory, import_ofac_lists

    directory = default_ofac_directory()
    if directory is not None and directory.is_dir():
        import_ofac_lists(directory)
    return seed_compliance_data(**kwargs)
