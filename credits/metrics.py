"""The credit ledger's figures at scrape time (``realtime.metrics``): the
outbox's lag (movements committed and not yet pushed) and the ledger's
totals."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Min, Sum
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric

from credits.models import CreditAccount, LedgerEntry, OutboxEvent


def collect() -> Iterable[Metric]:
    pending = OutboxEvent.objects.filter(delivered_at__isnull=True)
    oldest = pending.aggregate(oldest=Min("entry__created_at"))["oldest"]
    yield GaugeMetricFamily(
        "ledgercore_outbox_pending", "Ledger movements committed and not yet pushed.", value=pending.count()
    )
    yield GaugeMetricFamily(
        "ledgercore_outbox_lag_seconds",
        "Age of the oldest movement not yet pushed (0 when none).",
        value=(timezone.now() - oldest).total_seconds() if oldest is not None else 0.0,
    )
    totals = CreditAccount.objects.aggregate(
        balance=Sum("balance"), earned=Sum("lifetime_earned"), spent=Sum("lifetime_spent")
    )
    balances = GaugeMetricFamily("ledgercore_ledger_credits", "Credits over all accounts, by kind.", labels=["kind"])
    for kind in ("balance", "earned", "spent"):
        balances.add_metric([kind], float(totals[kind] or 0))
    yield balances
    yield GaugeMetricFamily("ledgercore_ledger_entries", "Ledger entries written.", value=LedgerEntry.objects.count())
    yield GaugeMetricFamily("ledgercore_credit_accounts", "Credit accounts.", value=CreditAccount.objects.count())
