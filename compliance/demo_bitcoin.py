"""The Bitcoin side of the demo graph (compliance.demo): a mining pool
funding exchanges, users' multi-address wallets (what the multi-input
clustering finds), ransomware, a darknet market, real OFAC addresses,
CoinJoins, then ordinary activity up to the wanted number of transfers.

The scenes run in a fixed order from the graph's one seeded generator, so
the same seed always gives the same transactions."""

from __future__ import annotations

from compliance.demo_graph import EXCHANGES, DemoGraph, Wallet


class BitcoinScenes:
    def __init__(self, graph: DemoGraph, target: int, ofac: list[str]) -> None:
        self.graph = graph
        self.rng = rng = graph.rng
        wallet = graph.wallet
        self.users = [wallet(f"user{i}", rng.randint(1, 4)) for i in range(max(100, target // 25))]
        self.exchanges = [wallet(f"exhot{i}", 3, f"ex{i}", "hot") for i in range(len(EXCHANGES))]
        self.deposit_wallets = [wallet(f"exdep{i}", 40, f"ex{i}", "deposit") for i in range(len(EXCHANGES))]
        self.pool = wallet("pool", 2, "pool")
        self.market = wallet("market", 6, "market", "illicit")
        self.ransom = wallet("ransom", 4, "ransomware", "illicit")
        self.casino = wallet("casino", 2, "casino")
        self.nokyc = wallet("nokyc", 3, "nokyc")
        self.tumbler_fee = wallet("tumbler", 1, "tumbler", "illicit")
        self.sanctioned = [Wallet([address]) for address in ofac]
        for sanctioned in self.sanctioned:
            graph.btc_owner[sanctioned.addresses[0]] = sanctioned

    # --- building blocks ------------------------------------------------------------

    def deposit(self, wallet: Wallet, ts: int, exchange: int, value: int) -> bool:
        return self.graph.btc_spend(wallet, ts, [(self.rng.choice(self.deposit_wallets[exchange].addresses), value)])

    def peel(self, wallet: Wallet, ts: int, hops: int, tag: str) -> None:
        """Peeling chain: a slice to an exchange or the no-KYC desk per hop,
        the change to a fresh address of the same owner."""
        graph, rng = self.graph, self.rng
        for hop in range(hops):
            if not wallet.utxos:
                return
            balance = wallet.balance()
            fresh = graph.btc_address("peel", tag, hop)
            target_wallet = self.deposit_wallets[rng.randrange(len(EXCHANGES))] if hop % 4 else self.nokyc
            slice_ = balance * rng.randint(5, 12) // 100
            wallet.addresses.append(fresh)
            graph.btc_owner[fresh] = wallet
            if not graph.btc_spend(wallet, ts, [(rng.choice(target_wallet.addresses), slice_)], change=fresh):
                return
            wallet.utxos = [u for u in wallet.utxos if u.address == fresh]
            ts = graph.later(ts, 4)

    # --- funding ----------------------------------------------------------------------

    def mining(self, target: int) -> None:
        """Newly mined coins fund the pool, which pays the exchanges; users
        get coins from exchanges."""
        graph, rng = self.graph, self.rng
        blocks = 60 + target // 500
        for n in range(blocks):
            ts = graph.moment(n / blocks * 0.1)
            graph.btc_tx(ts, [], [(rng.choice(self.pool.addresses), 312_500_000 + rng.randint(0, 30_000_000))], 0)
        for n, exchange in enumerate(self.exchanges * 6):
            graph.btc_spend(self.pool, graph.moment(0.1 + n * 0.001), [(rng.choice(exchange.addresses), 2_800_000_000)])
        for n, user in enumerate(self.users):
            exchange = self.exchanges[n % len(self.exchanges)]
            paid_at = graph.moment(0.12 + 0.05 * n / len(self.users))
            graph.btc_spend(exchange, paid_at, [(user.addresses[0], graph.sats(0.4))])

    # --- illicit flows ----------------------------------------------------------------

    def ransomware(self, scale: int) -> None:
        """Ransom payments, then laundering by peeling."""
        graph, rng = self.graph, self.rng
        for _ in range(15 * scale):
            victim = rng.choice(self.users)
            ransom_address = rng.choice(self.ransom.addresses)
            graph.btc_spend(victim, graph.moment(0.2 + rng.random() * 0.4), [(ransom_address, graph.sats(0.05))])
        self.peel(self.ransom, graph.moment(0.65), 20, "ransom")

    def darknet_market(self, scale: int) -> None:
        """Market purchases; vendors paid out of several market addresses at once."""
        graph, rng = self.graph, self.rng
        for _ in range(30 * scale):
            buyer = rng.choice(self.users)
            shop = rng.choice(self.market.addresses)
            graph.btc_spend(buyer, graph.moment(0.2 + rng.random() * 0.6), [(shop, graph.sats(0.01))])
        vendors = [graph.wallet(f"vendor{k}", 2) for k in range(6)]
        for n, vendor in enumerate(vendors * 2):
            graph.btc_spend(self.market, graph.moment(0.82 + n * 0.003), [(vendor.addresses[0], graph.sats(0.02))])
            paid_at = graph.moment(0.86 + n * 0.003)
            graph.btc_spend(vendor, paid_at, [(rng.choice(self.nokyc.addresses), graph.sats(0.008))])

    def ofac(self) -> None:
        """Real OFAC addresses, funded by the market, paying and paid by users."""
        graph, rng = self.graph, self.rng
        for n, wallet in enumerate(self.sanctioned):
            graph.btc_spend(self.market, graph.moment(0.3 + n * 0.01), [(wallet.addresses[0], graph.sats(0.05))])
            for k in range(3):
                payee = rng.choice(self.users)
                paid_at = graph.moment(0.35 + n * 0.01 + k * 0.02)
                if graph.btc_spend(wallet, paid_at, [(payee.addresses[0], graph.sats(0.004))]):
                    venue = rng.randrange(len(EXCHANGES))
                    self.deposit(payee, graph.moment(0.5 + rng.random() * 0.3), venue, graph.sats(0.002))
            payer = rng.choice(self.users)
            graph.btc_spend(payer, graph.moment(0.6 + n * 0.01), [(wallet.addresses[0], graph.sats(0.001))])
            self.peel(wallet, graph.moment(0.7 + n * 0.01), 4, f"ofac{n}")

    def coinjoins(self, scale: int) -> None:
        """Five users, five equal outputs to fresh addresses (the clustering skips these)."""
        graph, rng = self.graph, self.rng
        for n in range(4 * scale):
            ts = graph.moment(0.4 + rng.random() * 0.4)
            participants = rng.sample(self.users, 5)
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
                fresh = graph.btc_address("mixed", n, k)
                user.addresses.append(fresh)
                graph.btc_owner[fresh] = user
                outputs.append((fresh, denomination))
                outputs.append((user.addresses[0], utxo.value - denomination - 10_000))
            if len(inputs) >= 3:
                outputs.append((self.tumbler_fee.addresses[0], 5_000 * len(inputs)))
                graph.btc_tx(min(ts, graph.now), inputs, outputs, 5_000 * len(inputs))

    # --- ordinary activity ------------------------------------------------------------

    def ordinary(self, target: int) -> None:
        graph, rng = self.graph, self.rng
        while len(graph.btc_transfers) < target:
            ts = graph.moment(0.15 + rng.random() * 0.85)
            user = rng.choice(self.users)
            pick = rng.random()
            ok = False
            if pick < 0.3:
                ok = self.deposit(user, ts, rng.randrange(len(EXCHANGES)), graph.sats(0.05))
            elif pick < 0.5:
                exchange = rng.choice(self.exchanges)
                ok = graph.btc_spend(exchange, ts, [(rng.choice(user.addresses), graph.sats(0.1))])
            elif pick < 0.7:
                payee = rng.choice(self.users)
                ok = graph.btc_spend(user, ts, [(rng.choice(payee.addresses), graph.sats(0.02))])
            elif pick < 0.8:  # an exchange sweeps several deposit addresses into its hot wallet
                index = rng.randrange(len(EXCHANGES))
                wallet = self.deposit_wallets[index]
                if len(wallet.utxos) >= 3:
                    value = sum(u.value for u in wallet.utxos[:3]) - 4_000
                    ok = graph.btc_spend(wallet, ts, [(rng.choice(self.exchanges[index].addresses), value)])
            elif pick < 0.9:
                ok = graph.btc_spend(user, ts, [(rng.choice(self.casino.addresses), graph.sats(0.005))])
                if ok and rng.random() < 0.5:
                    graph.btc_spend(self.casino, graph.later(ts), [(user.addresses[0], graph.sats(0.006))])
            else:
                ok = graph.btc_spend(user, ts, [(rng.choice(self.nokyc.addresses), graph.sats(0.01))])
            if not ok:
                self._buy(ts, user)

    def _buy(self, ts: int, user: Wallet) -> None:
        """The user buys coins; an exchange that ran dry is refilled by the pool."""
        graph, rng = self.graph, self.rng
        exchange = rng.choice(self.exchanges)
        if not graph.btc_spend(exchange, ts, [(user.addresses[0], graph.sats(0.3))]):
            graph.btc_tx(ts, [], [(rng.choice(self.pool.addresses), 312_500_000)], 0)
            graph.btc_spend(self.pool, ts, [(rng.choice(exchange.addresses), 300_000_000)])


def build_bitcoin(graph: DemoGraph, target: int, ofac: list[str]) -> None:
    """At least ``target`` Bitcoin transfers into ``graph``, with ``ofac``
    (listed addresses) planted among ordinary users."""
    target = max(0, target)
    scenes = BitcoinScenes(graph, target, ofac)
    scenes.mining(target)
    scale = max(1, target // 10_000)
    scenes.ransomware(scale)
    scenes.darknet_market(scale)
    scenes.ofac()
    scenes.coinjoins(scale)
    scenes.ordinary(target)
