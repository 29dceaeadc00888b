"""The credit ledger: one account per (user, application), append-only entries.

Balances are integers. Every movement is a LedgerEntry with the balance after
it, a per-account sequence number and a hash chained to the previous entry of
the account. Entries are never updated or deleted (database triggers refuse
it); a correction is a new entry that references the one it reverses.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.dispatch import Signal

# Sent with ``instances`` (new entries, in sequence order) after they were
# inserted together in one INSERT, which sends no ``post_save``: the
# ledger's signals (credits.signals) announce them as they do a saved one.
entries_inserted = Signal()


class CreditAccount(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="credit_accounts")
    application = models.ForeignKey("accounts.Application", on_delete=models.PROTECT, related_name="credit_accounts")
    balance = models.BigIntegerField(default=0)
    lifetime_earned = models.BigIntegerField(default=0)
    lifetime_spent = models.BigIntegerField(default=0)
    last_sequence = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64, default="")
    expiring = models.BigIntegerField(
        default=0, help_text="Part of the balance that comes from grants with an expiry date and is not spent yet."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "application"], name="credit_account_unique"),
            models.CheckConstraint(
                condition=models.Q(expiring__gte=0, expiring__lte=models.F("balance")),
                name="credit_account_expiring_within_balance",
            ),
            models.CheckConstraint(condition=models.Q(balance__gte=0), name="credit_account_balance_non_negative"),
            models.CheckConstraint(
                condition=models.Q(lifetime_earned__gte=0, lifetime_spent__gte=0),
                name="credit_account_lifetimes_non_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.application_id}: {self.balance}"


class EntryKind(models.TextChoices):
    GRANT = "grant", "Grant"
    DEDUCTION = "deduction", "Deduction"
    REFUND = "refund", "Refund"
    HOLD = "hold", "Hold"
    CAPTURE = "capture", "Capture of a hold"
    RELEASE = "release", "Release of a hold"
    EXPIRY = "expiry", "Expiry"
    ADJUSTMENT = "adjustment", "Manual adjustment"


class ActorType(models.TextChoices):
    USER = "user", "User"
    STAFF = "staff", "Staff member"
    SYSTEM = "system", "System"


class LedgerEntry(models.Model):
    """One movement. ``amount`` is the signed change of the balance; a capture
    records the spent part of a hold in ``spent`` and returns the unused part
    as its amount."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="entries")
    sequence = models.BigIntegerField()
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount = models.BigIntegerField()
    spent = models.BigIntegerField(default=0, help_text="Credits consumed by this entry (deductions, captures).")
    balance_after = models.BigIntegerField()
    lifetime_earned_after = models.BigIntegerField()
    lifetime_spent_after = models.BigIntegerField()
    action = models.CharField(max_length=100, help_text="Event name or admin action that caused the movement.")
    reason = models.CharField(max_length=500, blank=True)
    actor_type = models.CharField(max_length=8, choices=ActorType.choices)
    actor_id = models.CharField(max_length=150, blank=True)
    reference = models.CharField(max_length=200, blank=True, help_text="Request, job or query id.")
    idempotency_key = models.CharField(max_length=200)
    reverses = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversals")
    hold = models.ForeignKey("Hold", null=True, blank=True, on_delete=models.PROTECT, related_name="entries")
    created_at = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["account_id", "sequence"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(fields=["account", "sequence"], name="ledger_entry_unique_sequence"),
            models.UniqueConstraint(fields=["account", "idempotency_key"], name="ledger_entry_unique_idempotency_key"),
            models.CheckConstraint(condition=models.Q(balance_after__gte=0), name="ledger_entry_balance_non_negative"),
            models.CheckConstraint(condition=models.Q(sequence__gte=1), name="ledger_entry_sequence_positive"),
            models.CheckConstraint(condition=models.Q(spent__gte=0), name="ledger_entry_spent_non_negative"),
        ]
        indexes = [models.Index(fields=["created_at"]), models.Index(fields=["kind", "created_at"])]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.kind} {self.amount:+d} → {self.balance_after}"


class Hold(models.Model):
    """Credits reserved for long work, captured or released at its end."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        CAPTURED = "captured", "Captured"
        RELEASED = "released", "Released"
        EXPIRED = "expired", "Expired"

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="holds")
    amount = models.BigIntegerField()
    captured = models.BigIntegerField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    action = models.CharField(max_length=100)
    reference = models.CharField(max_length=200, blank=True)
    owner = models.CharField(
        max_length=80,
        blank=True,
        help_text="Server process that settles it (realtime.processes); when it dies the hold is released. "
        "Empty: settled by its job or at its expiry.",
    )
    expires_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="hold_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(captured__isnull=True) | models.Q(captured__gte=0, captured__lte=models.F("amount")),
                name="hold_capture_within_amount",
            ),
        ]
        indexes = [models.Index(fields=["status", "expires_at"])]


class CreditBlock(models.Model):
    """Credits of one grant that expire at a date (Orb-style block). Spending
    draws from the soonest-expiring open block first; what is left at the
    expiry date leaves the balance through an expiry entry."""

    account = models.ForeignKey(CreditAccount, on_delete=models.PROTECT, related_name="blocks")
    grant = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="block")
    amount = models.BigIntegerField()
    remaining = models.BigIntegerField()
    expires_at = models.DateTimeField()
    expiry = models.OneToOneField(
        LedgerEntry, null=True, blank=True, on_delete=models.PROTECT, related_name="expired_block"
    )
    expired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(amount__gt=0), name="credit_block_amount_positive"),
            models.CheckConstraint(
                condition=models.Q(remaining__gte=0, remaining__lte=models.F("amount")),
                name="credit_block_remaining_within_amount",
            ),
        ]
        indexes = [models.Index(fields=["account", "expired_at", "expires_at"]), models.Index(fields=["expires_at"])]

    def __str__(self) -> str:
        return f"{self.remaining}/{self.amount} until {self.expires_at:%Y-%m-%d %H:%M}"


class BlockDraw(models.Model):
    """How much of a block an entry took (positive) or gave back (negative):
    the audit trail of every block's ``remaining``."""

    entry = models.ForeignKey(LedgerEntry, on_delete=models.PROTECT, related_name="block_draws")
    block = models.ForeignKey(CreditBlock, on_delete=models.PROTECT, related_name="draws")
    amount = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=~models.Q(amount=0), name="block_draw_amount_non_zero"),
        ]


class Price(models.Model):
    """Price of one action (event name) in one application; overrides the
    default of LEDGERCORE_PRICES."""

    application = models.ForeignKey("accounts.Application", on_delete=models.CASCADE, related_name="prices")
    action = models.CharField(max_length=100)
    amount = models.PositiveBigIntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["application", "action"], name="price_unique_action")]

    def __str__(self) -> str:
        return f"{self.action} = {self.amount} in {self.application_id}"


class OutboxEvent(models.Model):
    """Durable record that an entry's events must reach the user's sockets;
    written in the entry's transaction, marked delivered after the send."""

    entry = models.OneToOneField(LedgerEntry, on_delete=models.PROTECT, related_name="outbox")
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)

    class Meta:
        indexes = [models.Index(fields=["delivered_at", "created_at"])]
