"""The Ethereum side of the demo graph (compliance.demo): exchanges and
services with labelled addresses, scripted illicit activity (a mixer, a scam,
a bridge exploit, a darknet market, real OFAC addresses meeting ordinary
users), then ordinary activity up to the wanted number of transfers.

The scenes run in a fixed order from the graph's one seeded generator, so
the same seed always gives the same transactions."""

from __future__ import annotations

from compliance.addresses import ETHEREUM
from compliance.chains import KNOWN_TOKENS
from compliance.demo_graph import BITCOIN_ONLY, EXCHANGES, LICIT, SERVICES, DemoGraph


class EthereumScenes:
    def __init__(self, graph: DemoGraph, target: int) -> None:
        self.graph = graph
        self.rng = rng = graph.rng
        self.usdt, self.usdc = (t.contract.lower() for t in KNOWN_TOKENS[ETHEREUM][:2])
        self.users = [graph.eth_address("user", i) for i in range(max(200, target // 12))]
        self.hot = {i: [graph.eth_address("hot", i, k) for k in range(2)] for i in range(len(EXCHANGES))}
        self.home = {u: rng.randrange(len(EXCHANGES)) for u in self.users}
        self.service = {
            key: [graph.eth_address(key, k) for k in range(3)] for key in SERVICES if key not in BITCOIN_ONLY
        }
        for i, wallets in self.hot.items():
            for address in wallets:
                graph.label(ETHEREUM, address, f"ex{i}", "hot")
        for key, addresses in self.service.items():
            kind = "illicit" if SERVICES[key][1] not in LICIT else "service"
            for address in addresses:
                graph.label(ETHEREUM, address, key, kind)
        self.known_deposits: dict[tuple[int, str], str] = {}

    # --- building blocks ------------------------------------------------------------

    def deposit_address(self, exchange: int, owner: str) -> str:
        """The owner's deposit address at an exchange (one per pair, as
        exchanges issue them)."""
        address = self.known_deposits.get((exchange, owner))
        if address is None:
            address = self.known_deposits[(exchange, owner)] = self.graph.eth_address("deposit", exchange, owner)
            self.graph.label(ETHEREUM, address, f"ex{exchange}", "deposit", "deposit address")
        return address

    def asset(self) -> tuple[int, str]:
        pick = self.rng.random()
        if pick < 0.5:
            return self.graph.wei(0.4), ""
        return self.graph.usd(600), self.usdt if pick < 0.8 else self.usdc

    def cash_out(self, sender: str, ts: int, value: int, token: str) -> None:
        exchange = self.rng.randrange(len(EXCHANGES))
        self.graph.eth_tx(ts, [(sender, self.deposit_address(exchange, sender), value, token)])

    def peel(self, origin: str, ts: int, value: int, token: str, hops: int, tag: str) -> None:
        """A peeling chain: each hop sends a slice to an exchange and the
        rest to a fresh address of the same owner."""
        graph, rng = self.graph, self.rng
        current = origin
        for hop in range(hops):
            ts = graph.later(ts, 6)
            slice_ = value * rng.randint(4, 12) // 100
            nxt = graph.eth_address("peel", tag, hop)
            exchange = rng.randrange(len(EXCHANGES))
            graph.eth_tx(ts, [(current, self.deposit_address(exchange, current), slice_, token)])
            ts = graph.later(ts, 2)
            value -= slice_
            graph.eth_tx(ts, [(current, nxt, value, token)])
            current = nxt

    # --- scripted illicit activity, in the first 80% of the span so that its
    # --- later hops still fall before now ----------------------------------------------

    def mixer(self, scale: int) -> None:
        """Fixed denominations in, fresh addresses out, then an exchange."""
        graph, rng, mixer = self.graph, self.rng, self.service["mixer"]
        for n in range(20 * scale):
            ts = graph.moment(rng.random() * 0.8)
            denomination = rng.choice((1, 10)) * 10**17 * rng.choice((1, 10))
            graph.eth_tx(ts, [(rng.choice(self.users), rng.choice(mixer), denomination, "")])
            fresh = graph.eth_address("mixed", n)
            ts = graph.later(ts, 48)
            graph.eth_tx(ts, [(rng.choice(mixer), fresh, denomination, "")])
            self.cash_out(fresh, graph.later(ts, 24), denomination * 99 // 100, "")

    def scam(self, scale: int) -> None:
        """Pig-butchering victims pay USDT; the scam launders through the
        bridge, the no-KYC exchange and peeling chains."""
        graph, rng, scam, usdt = self.graph, self.rng, self.service["scam"], self.usdt
        for n in range(25 * scale):
            ts = graph.moment(rng.random() * 0.7)
            graph.eth_tx(ts, [(rng.choice(self.users), scam[n % 2], graph.usd(3_000), usdt)])
        for n in range(3 * scale):
            ts = graph.moment(0.7 + rng.random() * 0.05)
            graph.eth_tx(ts, [(scam[0], scam[2], graph.usd(40_000), usdt)])
            graph.eth_tx(graph.later(ts), [(scam[2], rng.choice(self.service["bridge"]), graph.usd(15_000), usdt)])
            graph.eth_tx(graph.later(ts), [(scam[2], rng.choice(self.service["nokyc"]), graph.usd(8_000), usdt)])
            self.peel(scam[2], graph.later(ts), graph.usd(20_000), usdt, 8, f"scam{n}")

    def exploit(self) -> None:
        """A bridge exploit: stolen ETH split, mixed, swapped and peeled."""
        graph, service = self.graph, self.service
        exploit = graph.moment(0.3)
        graph.eth_tx(exploit, [(service["bridge"][0], service["hacker"][0], 2_400 * 10**18, "")])
        for n in range(12):
            ts = graph.later(exploit, 12)
            splinter = graph.eth_address("splinter", n)
            graph.eth_tx(ts, [(service["hacker"][0], splinter, 200 * 10**18, "")])
            if n % 3 == 0:
                graph.eth_tx(graph.later(ts), [(splinter, service["mixer"][n % 3], 100 * 10**18, "")])
                self.peel(splinter, graph.later(ts), 100 * 10**18, "", 6, f"hack{n}")
            elif n % 3 == 1:
                graph.eth_tx(graph.later(ts), [(splinter, service["dex"][0], 200 * 10**18, "")])
            else:
                self.peel(splinter, graph.later(ts), 200 * 10**18, "", 10, f"hack{n}")

    def market(self, scale: int) -> None:
        """A darknet market paid in USDT; its vendors cash out."""
        graph, rng, service, usdt = self.graph, self.rng, self.service, self.usdt
        for n in range(10 * scale):
            ts = graph.moment(rng.random() * 0.8)
            graph.eth_tx(ts, [(rng.choice(self.users), service["market"][0], graph.usd(150), usdt)])
            vendor = graph.eth_address("vendor", n % 7)
            graph.eth_tx(graph.later(ts), [(service["market"][0], vendor, graph.usd(120), usdt)])
            cash_desk = rng.choice(service["p2p"] + service["nokyc"])
            graph.eth_tx(graph.later(ts, 72), [(vendor, cash_desk, graph.usd(100), usdt)])

    def sanctioned(self, ofac: list[str]) -> None:
        """Sanctioned addresses meet ordinary users: direct and indirect exposure."""
        graph, rng, users = self.graph, self.rng, self.users
        for n, listed in enumerate(ofac):
            for _ in range(4):
                ts = graph.moment(rng.random() * 0.8)
                payee = rng.choice(users)
                value, token = self.asset()
                graph.eth_tx(ts, [(listed, payee, value, token)])  # direct exposure (incoming)
                onward = rng.choice(users)
                graph.eth_tx(graph.later(ts), [(payee, onward, value * rng.randint(50, 90) // 100, token)])
                self.cash_out(onward, graph.later(ts, 48), value // 3, token)  # indirect, then an exchange
                graph.eth_tx(graph.moment(rng.random()), [(rng.choice(users), listed, graph.wei(0.2), "")])
            self.peel(listed, graph.moment(0.5), graph.wei(30), "", 5, f"ofac{n}")

    # --- ordinary activity, spread over the whole span --------------------------------------

    def ordinary(self, target: int) -> None:
        graph, rng = self.graph, self.rng
        while len(graph.eth_transfers) < target:
            ts = graph.moment(rng.random())
            user = rng.choice(self.users)
            pick = rng.random()
            if pick < 0.24:
                self._deposit(ts, user)
            elif pick < 0.44:  # withdrawal
                value, token = self.asset()
                graph.eth_tx(ts, [(rng.choice(self.hot[self.home[user]]), user, value, token)])
            elif pick < 0.58:  # user to user
                value, token = self.asset()
                graph.eth_tx(ts, [(user, rng.choice(self.users), value // 4, token)])
            elif pick < 0.68:  # swap ETH for USDC on the DEX, one transaction, two edges
                pool = rng.choice(self.service["dex"])
                amount = graph.wei(0.5)
                graph.eth_tx(ts, [(user, pool, amount, ""), (pool, user, amount * 3_000 // 10**12, self.usdc)])
            elif pick < 0.78:
                self._rebalance(ts)
            elif pick < 0.85:  # gambling
                casino = rng.choice(self.service["casino"])
                graph.eth_tx(ts, [(user, casino, graph.wei(0.1), "")])
                if rng.random() < 0.4:
                    graph.eth_tx(graph.later(ts, 2), [(casino, user, graph.wei(0.15), "")])
            elif pick < 0.90:  # bridge out
                graph.eth_tx(ts, [(user, rng.choice(self.service["bridge"]), graph.usd(900), self.usdc)])
            elif pick < 0.95:  # paying a merchant through the processor
                graph.eth_tx(ts, [(user, rng.choice(self.service["processor"]), graph.usd(60), self.usdc)])
            else:  # no-KYC exchange or P2P desk
                venue = rng.choice(self.service["nokyc"] + self.service["p2p"])
                value, token = self.asset()
                edge = (user, venue, value, token) if rng.random() < 0.5 else (venue, user, value, token)
                graph.eth_tx(ts, [edge])

    def _deposit(self, ts: int, user: str) -> None:
        """A deposit, later swept to a hot wallet."""
        graph, rng = self.graph, self.rng
        value, token = self.asset()
        exchange = self.home[user] if rng.random() < 0.8 else rng.randrange(len(EXCHANGES))
        address = self.deposit_address(exchange, user)
        graph.eth_tx(ts, [(user, address, value, token)])
        if rng.random() < 0.6:
            graph.eth_tx(graph.later(ts, 12), [(address, rng.choice(self.hot[exchange]), value, token)])

    def _rebalance(self, ts: int) -> None:
        """Exchange-to-exchange rebalancing across borders."""
        graph, rng = self.graph, self.rng
        source, target_exchange = rng.sample(range(len(EXCHANGES)), 2)
        value, token = graph.usd(80_000), rng.choice((self.usdt, self.usdc))
        if rng.random() < 0.3:
            value, token = graph.wei(40), ""
        receiver = self.deposit_address(target_exchange, f"treasury-{source}")
        graph.eth_tx(ts, [(rng.choice(self.hot[source]), receiver, value, token)])


def build_ethereum(graph: DemoGraph, target: int, ofac: list[str]) -> None:
    """At least ``target`` Ethereum transfers into ``graph``, with ``ofac``
    (listed addresses) planted among ordinary users."""
    scenes = EthereumScenes(graph, target)
    scale = max(1, target // 10_000)
    scenes.mixer(scale)
    scenes.scam(scale)
    scenes.exploit()
    scenes.market(scale)
    scenes.sanctioned(ofac)
    scenes.ordinary(target)
