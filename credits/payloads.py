"""Payload serializers of the credit events (section "Credits" of the event
reference) and the one builder of the balance payload."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from realtime.payloads import Payload


class _CreditCommon(Payload):
    applicationId = serializers.CharField()
    sequence = serializers.IntegerField(help_text="The account's ledger sequence; strictly increasing, dedupe by it.")


class BalancePayload(_CreditCommon):
    newBalance = serializers.IntegerField()
    lifetimeEarned = serializers.IntegerField()
    lifetimeSpent = serializers.IntegerField()


class _MovementPayload(_CreditCommon):
    amount = serializers.IntegerField()
    newBalance = serializers.IntegerField()
    transactionId = serializers.CharField()
    timestamp = serializers.IntegerField(help_text="Epoch milliseconds.")


class DeductedPayload(_MovementPayload):
    action = serializers.CharField()


class GrantedPayload(_MovementPayload):
    reason = serializers.CharField()


class InsufficientPayload(Payload):
    required = serializers.IntegerField()
    available = serializers.IntegerField()
    action = serializers.CharField()


def balance_payload(
    *, application_id: str, balance: int, lifetime_earned: int, lifetime_spent: int, sequence: int
) -> dict[str, Any]:
    """``credit_balance_updated``: after a movement, and once on connect."""
    return {
        "newBalance": balance,
        "lifetimeEarned": lifetime_earned,
        "lifetimeSpent": lifetime_spent,
        "applicationId": application_id,
        "sequence": sequence,
    }
