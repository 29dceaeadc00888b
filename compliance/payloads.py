"""Payload serializers of the compliance events (the event reference's
section "Compliance (LedgerBrain)"): requests and the replies they announce.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from compliance import flows, history
from compliance.addresses import InvalidAddress, UnknownChain, normalize_chain_address
from marketdata.interface import WindowField as MarketWindowField
from realtime.handlers import ErrorPayload
from realtime.payloads import Payload

# --- requests ------------------------------------------------------------------------------


class WindowField(MarketWindowField):
    """A duration (``"7d"``: the last such span) or ``{from, to}`` epoch ms,
    resolved to ``(start, end)``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(subject="Transfers", examples="7d, 30d", as_range=True, **kwargs)


class FlowsRequest(Payload):
    corridor = serializers.CharField(max_length=5, help_text='Two ISO 3166-1 alpha-2 codes, "US-MX" (from US to MX).')
    window = WindowField(help_text="A duration (7d, 30d) or {from, to} in epoch ms; at most 366 days.")

    def validate_corridor(self, value: str) -> flows.Corridor:
        try:
            return flows.parse_corridor(value)
        except ValueError as exc:
            raise serializers.ValidationError(str(exc)) from None

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        start, end = attrs["window"]
        if end - start > flows.MAX_WINDOW_MS:
            raise serializers.ValidationError({"window": ["At most 366 days."]})
        return attrs


class _AddressRequest(Payload):
    chain = serializers.CharField(max_length=32, help_text="ethereum or bitcoin.")
    address = serializers.CharField(max_length=128, help_text="Validated per chain; EIP-55 checksums are checked.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # Malformed addresses are refused before anything is charged; an
        # unknown chain is NOT_FOUND from the handler.
        try:
            attrs["address"] = normalize_chain_address(attrs["chain"], attrs["address"].strip())
        except UnknownChain:
            pass
        except InvalidAddress as exc:
            raise serializers.ValidationError({"address": [f"Not a valid {attrs['chain']} address: {exc}"]}) from None
        return attrs


class AnalysisRequest(_AddressRequest):
    hops = serializers.IntegerField(min_value=1, max_value=5, default=2, help_text="1-5, default 2.")


class TransactionsRequest(_AddressRequest):
    limit = serializers.IntegerField(min_value=1, max_value=history.MAX_LIMIT, default=history.DEFAULT_LIMIT)
    cursor = serializers.CharField(
        required=False, allow_null=True, max_length=500, help_text="nextCursor of the previous page."
    )


# --- replies -------------------------------------------------------------------------------


class JobIdPayload(Payload):
    jobId = serializers.CharField()


class ProgressPayload(JobIdPayload):
    stage = serializers.CharField(help_text="resolve, labels, expand_hop_<n>, exposure, score, explain.")
    pct = serializers.IntegerField(min_value=0, max_value=100, help_text="Never decreases.")


class EntityPayload(Payload):
    name = serializers.CharField()
    category = serializers.CharField()
    country = serializers.CharField(allow_null=True)


class SourcePayload(Payload):
    source = serializers.CharField(help_text="Where the label comes from, e.g. ofac:ETH.")
    version = serializers.CharField()
    confidence = serializers.IntegerField(min_value=0, max_value=100)


class SignalPayload(Payload):
    type = serializers.ChoiceField(["ownership", "exposure", "behaviour"])
    category = serializers.CharField(allow_null=True, help_text="Entity category; null for behaviours.")
    direction = serializers.ChoiceField(["in", "out"], allow_null=True, help_text="in: source of funds.")
    severity = serializers.ChoiceField(["low", "medium", "high", "severe"])
    hops = serializers.IntegerField(help_text="0 ownership, 1 direct, more indirect (minimum hops).")
    amount = serializers.CharField(allow_null=True, help_text="Exact, in the asset's units (decimal string).")
    asset = serializers.CharField(allow_null=True)
    amountUSD = serializers.FloatField(allow_null=True, help_text="Dollar stablecoins only (1 USD each).")
    share = serializers.FloatField(allow_null=True, help_text="Of the address's flow that way in that asset.")
    contribution = serializers.IntegerField(help_text="Points of riskScore; contributions add up to it.")
    rule = serializers.CharField()
    entity = EntityPayload(allow_null=True)
    counterparty = serializers.CharField(allow_null=True, help_text="The attributed address of the example path.")
    sources = SourcePayload(many=True)
    path = serializers.ListField(child=serializers.CharField(), help_text="Transaction hashes, hop by hop.")
    description = serializers.CharField()


class ClusterPayload(Payload):
    id = serializers.IntegerField()
    heuristic = serializers.CharField()
    size = serializers.IntegerField()
    entity = serializers.CharField(allow_null=True)
    category = serializers.CharField(allow_null=True)


class ExposurePayload(Payload):
    category = serializers.CharField()
    direction = serializers.ChoiceField(["in", "out"])
    asset = serializers.CharField()
    direct = serializers.CharField(help_text="Asset units (decimal string).")
    indirect = serializers.CharField(help_text="Asset units (decimal string).")
    directUSD = serializers.FloatField(allow_null=True)
    indirectUSD = serializers.FloatField(allow_null=True)
    minHops = serializers.IntegerField()


class StatsPayload(Payload):
    addressesVisited = serializers.IntegerField()
    edgesRead = serializers.IntegerField()


class AnalysisResponsePayload(JobIdPayload):
    chain = serializers.CharField()
    address = serializers.CharField(help_text="Normal form.")
    hops = serializers.IntegerField()
    known = serializers.BooleanField(help_text="False: the address was never seen (no labels, no transfers).")
    riskScore = serializers.IntegerField(min_value=0, max_value=100)
    riskLevel = serializers.ChoiceField(["low", "medium", "high", "severe"])
    clusters = ClusterPayload(many=True)
    signals = SignalPayload(many=True)
    exposure = ExposurePayload(many=True, help_text="Every category reached, licit ones included.")
    rules = serializers.ListField(child=serializers.CharField(), help_text="Rules triggered.")
    truncated = serializers.BooleanField(help_text="The neighbourhood was cut at the expansion bounds.")
    stats = StatsPayload()


class CompletedPayload(JobIdPayload):
    durationMs = serializers.IntegerField()


class AnalysisErrorPayload(ErrorPayload):
    jobId = serializers.CharField(allow_null=True, required=False)


class TransactionPayload(Payload):
    hash = serializers.CharField()
    timestamp = serializers.IntegerField()
    direction = serializers.ChoiceField(["in", "out", "self"])
    counterparty = serializers.CharField(allow_null=True)
    asset = serializers.CharField()
    amount = serializers.CharField(help_text="Net for the address, in the asset's units (decimal string).")
    blockNumber = serializers.IntegerField(allow_null=True)
    fee = serializers.CharField(allow_null=True, help_text="In the chain's native units.")


class TransactionsResponsePayload(Payload):
    chain = serializers.CharField()
    address = serializers.CharField()
    transactions = TransactionPayload(many=True)
    nextCursor = serializers.CharField(allow_null=True, help_text="Opaque; null on the last page.")


class TransactionsUpdatePayload(Payload):
    chain = serializers.CharField()
    address = serializers.CharField(help_text="Normal form, as in the room's name.")
    transactions = TransactionPayload(many=True)


class FlowPayload(Payload):
    direction = serializers.ChoiceField(["outbound", "inbound"])
    day = serializers.CharField(help_text="UTC date, YYYY-MM-DD.")
    asset = serializers.CharField()
    txCount = serializers.IntegerField()
    volume = serializers.CharField(help_text="Asset units (decimal string).")
    volumeUSD = serializers.FloatField(allow_null=True)
    unpricedTransfers = serializers.IntegerField()


class TotalsPayload(Payload):
    outbound = serializers.FloatField()
    inbound = serializers.FloatField()
    net = serializers.FloatField(help_text="outbound - inbound.")


class FlowsResponsePayload(Payload):
    corridor = serializers.CharField()
    flows = FlowPayload(many=True)
    totalsUSD = TotalsPayload()
    unpricedTransfers = serializers.IntegerField(help_text="Transfers left out of the USD figures.")
    window = type(
        "WindowRangePayload",
        (Payload,),
        {
            "from": serializers.IntegerField(help_text="Epoch ms, inclusive."),
            "to": serializers.IntegerField(help_text="Epoch ms, exclusive."),
        },
    )(help_text="The window the flows cover.")
