"""Cross-border flows: value moved between entities attributed to two
countries, by direction, asset and day, with USD totals.

A transfer belongs to the corridor ``A-B`` when its sender carries an active
label of an entity in country A and its receiver one in country B
(outbound), or the reverse (inbound). USD: dollar stablecoins at 1; ETH,
WETH and BTC at the close of the 1h market-data candle of ``<ASSET>-USD``
the transfer falls in (all venues merged); a transfer with no such candle
is left out of the USD figures and counted in ``unpricedTransfers``. Volumes
in asset units stay exact (decimal strings).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from compliance import graph
from compliance.chains import STABLECOINS
from compliance.models import AddressLabel, Transfer
from compliance.units import format_units
from marketdata import interface as market_services

HOUR_MS = 3_600_000
MAX_WINDOW_MS = 366 * 86_400_000
PRICED_BY_MARKET = {"ETH": "ETH-USD", "WETH": "ETH-USD", "BTC": "BTC-USD"}

# ISO 3166-1 alpha-2 officially assigned codes.
ISO_COUNTRIES = frozenset(
    [
        "AD",
        "AE",
        "AF",
        "AG",
        "AI",
        "AL",
        "AM",
        "AO",
        "AQ",
        "AR",
        "AS",
        "AT",
        "AU",
        "AW",
        "AX",
        "AZ",
        "BA",
        "BB",
        "BD",
        "BE",
        "BF",
        "BG",
        "BH",
        "BI",
        "BJ",
        "BL",
        "BM",
        "BN",
        "BO",
        "BQ",
        "BR",
        "BS",
        "BT",
        "BV",
        "BW",
        "BY",
        "BZ",
        "CA",
        "CC",
        "CD",
        "CF",
        "CG",
        "CH",
        "CI",
        "CK",
        "CL",
        "CM",
        "CN",
        "CO",
        "CR",
        "CU",
        "CV",
        "CW",
        "CX",
        "CY",
        "CZ",
        "DE",
        "DJ",
        "DK",
        "DM",
        "DO",
        "DZ",
        "EC",
        "EE",
        "EG",
        "EH",
        "ER",
        "ES",
        "ET",
        "FI",
        "FJ",
        "FK",
        "FM",
        "FO",
        "FR",
        "GA",
        "GB",
        "GD",
        "GE",
        "GF",
        "GG",
        "GH",
        "GI",
        "GL",
        "GM",
        "GN",
        "GP",
        "GQ",
        "GR",
        "GS",
        "GT",
        "GU",
        "GW",
        "GY",
        "HK",
        "HM",
        "HN",
        "HR",
        "HT",
        "HU",
        "ID",
        "IE",
        "IL",
        "IM",
        "IN",
        "IO",
        "IQ",
        "IR",
        "IS",
        "IT",
        "JE",
        "JM",
        "JO",
        "JP",
        "KE",
        "KG",
        "KH",
        "KI",
        "KM",
        "KN",
        "KP",
        "KR",
        "KW",
        "KY",
        "KZ",
        "LA",
        "LB",
        "LC",
        "LI",
        "LK",
        "LR",
        "LS",
        "LT",
        "LU",
        "LV",
        "LY",
        "MA",
        "MC",
        "MD",
        "ME",
        "MF",
        "MG",
        "MH",
        "MK",
        "ML",
        "MM",
        "MN",
        "MO",
        "MP",
        "MQ",
        "MR",
        "MS",
        "MT",
        "MU",
        "MV",
        "MW",
        "MX",
        "MY",
        "MZ",
        "NA",
        "NC",
        "NE",
        "NF",
        "NG",
        "NI",
        "NL",
        "NO",
        "NP",
        "NR",
        "NU",
        "NZ",
        "OM",
        "PA",
        "PE",
        "PF",
        "PG",
        "PH",
        "PK",
        "PL",
        "PM",
        "PN",
        "PR",
        "PS",
        "PT",
        "PW",
        "PY",
        "QA",
        "RE",
        "RO",
        "RS",
        "RU",
        "RW",
        "SA",
        "SB",
        "SC",
        "SD",
        "SE",
        "SG",
        "SH",
        "SI",
        "SJ",
        "SK",
        "SL",
        "SM",
        "SN",
        "SO",
        "SR",
        "SS",
        "ST",
        "SV",
        "SX",
        "SY",
        "SZ",
        "TC",
        "TD",
        "TF",
        "TG",
        "TH",
        "TJ",
        "TK",
        "TL",
        "TM",
        "TN",
        "TO",
        "TR",
        "TT",
        "TV",
        "TW",
        "TZ",
        "UA",
        "UG",
        "UM",
        "US",
        "UY",
        "UZ",
        "VA",
        "VC",
        "VE",
        "VG",
        "VI",
        "VN",
        "VU",
        "WF",
        "WS",
        "YE",
        "YT",
        "ZA",
        "ZM",
        "ZW",
    ]
)


@dataclass(frozen=True)
class Corridor:
    origin: str
    destination: str

    @property
    def name(self) -> str:
        return f"{self.origin}-{self.destination}"


def parse_corridor(text: str) -> Corridor:
    """``"US-MX"`` -> Corridor; ValueError naming the problem."""
    parts = text.strip().split("-")
    if len(parts) != 2 or not all(len(p) == 2 and p.isascii() and p.isupper() for p in parts):
        raise ValueError("Expected two ISO 3166-1 alpha-2 codes joined by '-', e.g. US-MX.")
    unknown = [p for p in parts if p not in ISO_COUNTRIES]
    if unknown:
        raise ValueError(f"Not an ISO 3166-1 alpha-2 country code: {', '.join(unknown)}.")
    if parts[0] == parts[1]:
        raise ValueError("A corridor joins two different countries.")
    return Corridor(parts[0], parts[1])


class _Prices:
    """Hourly closes per market symbol, loaded once per request."""

    def __init__(self, start_ms: int, end_ms: int) -> None:
        self.start = start_ms - start_ms % HOUR_MS
        self.end = end_ms
        self.closes: dict[str, dict[int, Decimal]] = {}

    def usd(self, symbol: str, units: Decimal, timestamp: int) -> Decimal | None:
        if symbol in STABLECOINS:
            return units
        market = PRICED_BY_MARKET.get(symbol)
        if market is None:
            return None
        if market not in self.closes:
            self.closes[market] = self._load(market)
        close = self.closes[market].get(timestamp - timestamp % HOUR_MS)
        return None if close is None else units * close

    def _load(self, market: str) -> dict[int, Decimal]:
        try:
            candles = market_services.load_candles(market, "1h", start_ms=self.start, end_ms=self.end)
        except market_services.MarketDataError:
            return {}
        return {c.timestamp: c.close for c in candles}


def _labelled(country: str) -> Any:
    return AddressLabel.objects.filter(entity__country=country, delisted_at__isnull=True).values("address_id")


def cross_border_flows(corridor: Corridor, start_ms: int, end_ms: int) -> dict[str, Any]:
    """Flows of the corridor with ``start_ms <= timestamp < end_ms``."""
    if end_ms - start_ms > MAX_WINDOW_MS:
        raise ValueError("the window is longer than 366 days")
    directions = (
        ("outbound", corridor.origin, corridor.destination),
        ("inbound", corridor.destination, corridor.origin),
    )
    prices = _Prices(start_ms, end_ms)
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    totals = {"outbound": Decimal(0), "inbound": Decimal(0)}
    unpriced = 0
    edges: list[tuple[str, int, int, int, int]] = []
    for direction, sender, receiver in directions:
        found = Transfer.objects.filter(
            timestamp__gte=start_ms,
            timestamp__lt=end_ms,
            from_address_id__in=_labelled(sender),
            to_address_id__in=_labelled(receiver),
        ).values_list("tx_id", "asset_id", "value", "timestamp")
        edges.extend((direction, *row) for row in found)
    assets = graph.assets({e[2] for e in edges})
    for direction, tx_id, asset_id, value, timestamp in sorted(edges, key=lambda e: (e[4], e[1], e[0])):
        fact = assets[asset_id]
        day = datetime.fromtimestamp(timestamp / 1000, tz=UTC).strftime("%Y-%m-%d")
        row = rows.setdefault(
            (direction, day, asset_id),
            {"direction": direction, "day": day, "asset": fact.symbol or fact.contract, "txs": set(), "base": 0},
        )
        row["txs"].add(tx_id)
        row["base"] += value
        usd = prices.usd(fact.symbol, Decimal(value).scaleb(-(fact.decimals or 0)), timestamp)
        if usd is None:
            unpriced += 1
            row["unpriced"] = row.get("unpriced", 0) + 1
        else:
            row["usd"] = row.get("usd", Decimal(0)) + usd
            totals[direction] += usd
    flows = []
    for (direction, day, asset_id), row in sorted(rows.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[1]["asset"])):
        fact = assets[asset_id]
        flows.append(
            {
                "direction": direction,
                "day": day,
                "asset": row["asset"],
                "txCount": len(row["txs"]),
                "volume": format_units(row["base"], fact.decimals),
                "volumeUSD": float(round(row["usd"], 2)) if "usd" in row else None,
                "unpricedTransfers": row.get("unpriced", 0),
            }
        )
    outbound, inbound = totals["outbound"], totals["inbound"]
    return {
        "corridor": corridor.name,
        "window": {"from": start_ms, "to": end_ms},
        "flows": flows,
        "totalsUSD": {
            "outbound": float(round(outbound, 2)),
            "inbound": float(round(inbound, 2)),
            "net": float(round(outbound - inbound, 2)),
        },
        "unpricedTransfers": unpriced,
    }
