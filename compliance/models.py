"""On-chain data, attribution and clusters for compliance analysis.

The graph the analysis walks is ``Transfer``: one directed, valued edge per
movement of an asset between two addresses, with the transaction's time
copied onto it so that "every transfer touching these addresses in this
window" is one range scan per address on an index that starts with the
address and continues with the time, on SQLite and PostgreSQL alike.

Account chains (Ethereum) have one edge per value transfer (the transaction's
own value, index -1) and per token Transfer log (its log index). UTXO chains
(Bitcoin) keep their raw inputs and outputs, and also get address-to-address
edges derived from them, each output's value shared among the input addresses
in proportion to what they put in (see ``compliance.ingest.utxo_edges``).

Amounts are exact integers in the asset's base unit (``AmountField``).
Timestamps on the wire and on edges are epoch milliseconds.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.utils import timezone

from compliance.fields import AmountField


class ChainKind(models.TextChoices):
    ACCOUNT = "account", "Account"
    UTXO = "utxo", "UTXO"


# Foreign keys that lead a unique constraint or composite index get no index
# of their own (db_index=False): it would only slow the bulk inserts down.


class Chain(models.Model):
    code = models.SlugField(max_length=32, unique=True)
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=8, choices=ChainKind.choices)
    native_symbol = models.CharField(max_length=20)
    native_decimals = models.PositiveSmallIntegerField()
    analysed = models.BooleanField(
        default=False, help_text="Transactions are imported and analysed; otherwise labels only (screening)."
    )

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        # Shown to staff (list columns, filters): the chain's name, not its code.
        return self.name or self.code


class Asset(models.Model):
    """What a transfer moves: the chain's native coin (empty contract) or a
    token contract. Unknown tokens have no symbol or decimals yet."""

    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="assets", db_index=False)
    contract = models.CharField(max_length=128, blank=True, help_text="Empty for the native coin.")
    symbol = models.CharField(max_length=32, blank=True)
    name = models.CharField(max_length=100, blank=True)
    decimals = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "contract"], name="asset_unique_contract")]

    def __str__(self) -> str:
        return f"{self.symbol or self.contract[:12]} on {self.chain.code}"


class Cluster(models.Model):
    """Addresses believed to share an owner. ``key`` is derived from the
    members (heuristic and smallest member address), so that recomputing
    clusters from the same data gives the same keys."""

    class Heuristic(models.TextChoices):
        MULTI_INPUT = "multi_input", "Common-input ownership"
        DEPOSIT_REUSE = "deposit_reuse", "Deposit-address reuse"
        MANUAL = "manual", "Analyst"

    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="clusters", db_index=False)
    heuristic = models.CharField(max_length=16, choices=Heuristic.choices)
    key = models.CharField(max_length=200)
    size = models.PositiveIntegerField(default=0)
    entity = models.ForeignKey(
        "Entity",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="clusters",
        help_text="Owner when an analyst has attributed the whole cluster.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["chain", "heuristic", "key"], name="cluster_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.heuristic} cluster {self.pk} ({self.size} addresses)"


class Address(models.Model):
    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="addresses", db_index=False)
    address = models.CharField(max_length=128, help_text="Normal form (lowercase for Ethereum and bech32).")
    cluster = models.ForeignKey(Cluster, null=True, blank=True, on_delete=models.SET_NULL, related_name="addresses")
    first_seen = models.BigIntegerField(null=True, blank=True, help_text="Epoch ms of the first transfer seen.")
    last_seen = models.BigIntegerField(null=True, blank=True, help_text="Epoch ms of the last transfer seen.")

    class Meta:
        verbose_name_plural = "addresses"
        constraints = [models.UniqueConstraint(fields=["chain", "address"], name="address_unique_per_chain")]

    def __str__(self) -> str:
        return f"{self.chain.code}:{self.address}"


class TxStatus(models.TextChoices):
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed (reverted)"
    UNKNOWN = "unknown", "Unknown"


class Transaction(models.Model):
    chain = models.ForeignKey(Chain, on_delete=models.PROTECT, related_name="transactions", db_index=False)
    hash = models.CharField(max_length=80)
    block_number = models.BigIntegerField(null=True, blank=True)
    timestamp = models.BigIntegerField(help_text="Block time, epoch ms.")
    fee = AmountField(null=True, blank=True, help_text="In the chain's native base unit (wei, satoshi).")
    status = models.CharField(max_length=8, choices=TxStatus.choices, default=TxStatus.UNKNOWN)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["chain", "hash"], name="transaction_unique_hash")]
        indexes = [models.Index(fields=["chain", "timestamp"], name="transaction_chain_time")]

    def __str__(self) -> str:
        return f"{self.chain.code}:{self.hash}"

    @property
    def time(self) -> datetime:
        return datetime.fromtimestamp(self.timestamp / 1000, tz=UTC)


class TransferKind(models.TextChoices):
    NATIVE = "native", "Native value"
    TOKEN = "token", "Token transfer"
    UTXO = "utxo", "UTXO flow (derived)"


class Transfer(models.Model):
    """A directed, valued edge of the transaction graph."""

    tx = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="transfers", db_index=False)
    index = models.IntegerField(help_text="-1: the transaction's own value; token: log index; UTXO: edge number.")
    kind = models.CharField(max_length=8, choices=TransferKind.choices)
    from_address = models.ForeignKey(
        Address, null=True, blank=True, on_delete=models.PROTECT, related_name="transfers_out", db_index=False
    )
    to_address = models.ForeignKey(
        Address, null=True, blank=True, on_delete=models.PROTECT, related_name="transfers_in", db_index=False
    )
    asset = models.ForeignKey(Asset, on_delete=models.PROTECT, related_name="transfers", db_index=False)
    value = AmountField(help_text="In the asset's base unit.")
    timestamp = models.BigIntegerField(help_text="The transaction's block time, epoch ms.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tx", "index"], name="transfer_unique_index")]
        indexes = [
            # (address, time, tx): a window of one address is one range scan,
            # already in (time, tx) order for keyset pagination.
            models.Index(fields=["from_address", "timestamp", "tx"], name="transfer_from_time"),
            models.Index(fields=["to_address", "timestamp", "tx"], name="transfer_to_time"),
        ]

    def __str__(self) -> str:
        return f"{self.from_address} -> {self.to_address}: {self.value} {self.asset.symbol or self.asset}"


class TxInput(models.Model):
    tx = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="inputs", db_index=False)
    index = models.IntegerField()
    address = models.ForeignKey(Address, null=True, blank=True, on_delete=models.PROTECT, related_name="spends")
    value = AmountField()
    spent_tx_hash = models.CharField(max_length=80, blank=True)
    spent_output_index = models.IntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tx", "index"], name="txinput_unique_index")]


class TxOutput(models.Model):
    tx = models.ForeignKey(Transaction, on_delete=models.CASCADE, related_name="outputs", db_index=False)
    index = models.IntegerField()
    address = models.ForeignKey(Address, null=True, blank=True, on_delete=models.PROTECT, related_name="receipts")
    value = AmountField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tx", "index"], name="txoutput_unique_index")]


class EntityCategory(models.TextChoices):
    SANCTIONS = "sanctions", "Sanctioned entity"
    DARKNET_MARKET = "darknet_market", "Darknet market"
    MIXER = "mixer", "Mixer"
    RANSOMWARE = "ransomware", "Ransomware"
    SCAM = "scam", "Scam"
    STOLEN_FUNDS = "stolen_funds", "Stolen funds"
    GAMBLING = "gambling", "Gambling"
    EXCHANGE = "exchange", "Exchange"
    NO_KYC_EXCHANGE = "no_kyc_exchange", "No-KYC exchange"
    DEFI = "defi", "DeFi protocol"
    BRIDGE = "bridge", "Bridge"
    P2P_EXCHANGE = "p2p_exchange", "P2P exchange"
    PAYMENT_PROCESSOR = "payment_processor", "Payment processor"
    MINING_POOL = "mining_pool", "Mining pool"
    OTHER = "other", "Other"


country_code_validator = RegexValidator(r"^[A-Z]{2}$", "ISO 3166-1 alpha-2 code, two capital letters.")


class Entity(models.Model):
    name = models.CharField(max_length=200, unique=True)
    category = models.CharField(max_length=20, choices=EntityCategory.choices)
    country = models.CharField(
        max_length=2,
        null=True,
        blank=True,
        validators=[country_code_validator],
        help_text="ISO 3166-1 alpha-2 where the entity operates or is registered; empty when unknown.",
    )
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "entities"
        indexes = [models.Index(fields=["country", "category"], name="entity_country_category")]

    def __str__(self) -> str:
        return self.name


class AddressLabel(models.Model):
    """An attribution of an address to an entity by a source, with its
    history: a label that leaves its source is closed (``delisted_at``), never
    deleted, and one that comes back gets a new row."""

    address = models.ForeignKey(Address, on_delete=models.PROTECT, related_name="labels")
    entity = models.ForeignKey(Entity, on_delete=models.PROTECT, related_name="labels")
    source = models.CharField(max_length=100, help_text="Where it comes from, e.g. ofac:ETH, demo, analyst:jane.")
    source_version = models.CharField(max_length=100, blank=True)
    confidence = models.PositiveSmallIntegerField(default=100, validators=[MaxValueValidator(100)])
    listed_at = models.DateTimeField(default=timezone.now)
    delisted_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["address", "entity", "source"],
                condition=models.Q(delisted_at__isnull=True),
                name="address_label_unique_active",
            ),
            models.CheckConstraint(condition=models.Q(confidence__lte=100), name="address_label_confidence_0_100"),
            models.CheckConstraint(
                condition=models.Q(delisted_at__isnull=True) | models.Q(delisted_at__gte=models.F("listed_at")),
                name="address_label_delisted_after_listed",
            ),
        ]
        indexes = [models.Index(fields=["source", "delisted_at"], name="address_label_source_active")]

    def __str__(self) -> str:
        state = "" if self.delisted_at is None else " (delisted)"
        return f"{self.address} → {self.entity} [{self.source}]{state}"


class LabelImport(models.Model):
    """One load of a label source (a version of the OFAC lists): what it
    added and closed, for auditors asking which list was in force when."""

    source = models.CharField(max_length=100)
    version = models.CharField(max_length=100)
    content_sha256 = models.CharField(max_length=64)
    imported_at = models.DateTimeField(auto_now_add=True)
    listed = models.PositiveIntegerField(default=0)
    delisted = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-imported_at"]

    def __str__(self) -> str:
        return f"{self.source} {self.version} ({self.imported_at:%Y-%m-%d %H:%M})"


class ListSnapshot(models.Model):
    """One dated version of a label source's lists (the OFAC lists as of a
    day) and the entries it had. The source's label history is rebuilt from
    all its snapshots in date order (``compliance.label_history``), so lists
    loaded in any order leave the same listings and delistings."""

    source = models.CharField(max_length=100, help_text="The list source, e.g. ofac.")
    as_of = models.DateTimeField(help_text="When this version of the lists was published.")
    version = models.CharField(max_length=100)
    content_sha256 = models.CharField(max_length=64)
    loaded_at = models.DateTimeField(auto_now=True, help_text="When it was last loaded.")

    class Meta:
        ordering = ["source", "-as_of"]
        constraints = [models.UniqueConstraint(fields=["source", "as_of"], name="list_snapshot_unique_date")]

    def __str__(self) -> str:
        return f"{self.source} {self.version} as of {self.as_of:%Y-%m-%d %H:%M}"


class ListSnapshotEntry(models.Model):
    """An address on one snapshot, under one label source (e.g. ofac:ETH)."""

    snapshot = models.ForeignKey(ListSnapshot, on_delete=models.CASCADE, related_name="entries", db_index=False)
    source = models.CharField(max_length=100, help_text="The label source, e.g. ofac:ETH.")
    address = models.ForeignKey(Address, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        verbose_name_plural = "list snapshot entries"
        constraints = [
            models.UniqueConstraint(fields=["snapshot", "source", "address"], name="list_snapshot_entry_unique")
        ]


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class AnalysisJob(models.Model):
    """One ``address_analysis`` request: durable, so that a worker in another
    process can run it, a reconnecting client can be answered from it, and a
    job whose worker died is found (stale heartbeat) and retried or failed."""

    id = models.CharField(primary_key=True, max_length=40, editable=False, help_text="jobId on the wire.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="analysis_jobs")
    application = models.ForeignKey(
        "accounts.Application", on_delete=models.PROTECT, related_name="analysis_jobs", db_index=False
    )
    chain = models.CharField(max_length=32)
    address = models.CharField(max_length=128, help_text="Normal form.")
    hops = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=JobStatus.choices, default=JobStatus.QUEUED)
    stage = models.CharField(max_length=40, blank=True)
    pct = models.PositiveSmallIntegerField(default=0)
    result = models.JSONField(null=True, blank=True)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    charge_reference = models.CharField(
        max_length=200, blank=True, help_text="Reference of the credit hold taken for it (released if it fails)."
    )
    request_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"], name="analysis_job_status_beat"),
            models.Index(fields=["application", "user", "created_at"], name="analysis_job_owner"),
        ]
        constraints = [models.CheckConstraint(condition=models.Q(pct__lte=100), name="analysis_job_pct_0_100")]

    def __str__(self) -> str:
        return f"{self.id} {self.chain}:{self.address} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (JobStatus.COMPLETED, JobStatus.FAILED)
