"""What the built-in translator can recognise by name: the symbols and
venues of market data, the chains, the entities of compliance. Read from the
database (a few small queries), so a symbol listed a minute ago is
understood without a restart."""

from __future__ import annotations

from dataclasses import dataclass, field

from compliance.models import Asset, Chain, Entity
from marketdata.models import Instrument, Venue

# Entities are matched by name in the question; beyond this many, the
# longest names are kept (short ones are the likeliest false matches).
MAX_ENTITY_NAMES = 5000


@dataclass(frozen=True)
class Vocabulary:
    symbols: tuple[str, ...] = ()
    venues: tuple[str, ...] = ()
    chains: tuple[str, ...] = ("ethereum", "bitcoin")
    entities: tuple[str, ...] = ()
    assets: tuple[str, ...] = ("ETH", "BTC", "USDT", "USDC", "DAI", "WETH")
    extra: dict[str, str] = field(default_factory=dict)


def load_vocabulary() -> Vocabulary:
    symbols = tuple(sorted(Instrument.objects.values_list("symbol", flat=True)))
    venues = tuple(sorted(Venue.objects.values_list("code", flat=True)))
    chains = tuple(sorted(set(Chain.objects.values_list("code", flat=True)) | {"ethereum", "bitcoin"}))
    names = list(Entity.objects.values_list("name", flat=True)[: MAX_ENTITY_NAMES * 2])
    names.sort(key=lambda name: (-len(name), name))
    assets = {symbol.upper() for symbol in Asset.objects.exclude(symbol="").values_list("symbol", flat=True)[:500]}
    return Vocabulary(
        symbols=symbols,
        venues=venues,
        chains=chains,
        entities=tuple(names[:MAX_ENTITY_NAMES]),
        assets=tuple(sorted(assets | {"ETH", "BTC", "USDT", "USDC", "DAI", "WETH"})),
    )
