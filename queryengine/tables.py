"""Catalog tables backed by Django models, and the private tables this app
owns: ``credit_entries`` and ``query_history``.

Other apps register theirs from their ``AppConfig.ready``::

    from queryengine.tables import register_model_table

    register_model_table(
        "trades",
        Trade,
        ["id", ("trade_time", "executed_at"), "price", "quantity", "venue"],
        description="Executed trades, every venue.",
        descriptions={"price": "Quote currency per unit."},
    )

Public names are the contract: keep them when fields are renamed (map the
new field under the old public name). Real table and column names come
from the model, so migrations do not break the catalog.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from django.db import models

from credits.interface import CreditAccount, LedgerEntry
from queryengine.catalog import Column, RegisteredTable, Scope, Table, register_table
from queryengine.models import QueryRecord

_FIELD_TYPES = {
    "AutoField": "integer",
    "BigAutoField": "integer",
    "SmallAutoField": "integer",
    "IntegerField": "integer",
    "BigIntegerField": "integer",
    "SmallIntegerField": "integer",
    "PositiveIntegerField": "integer",
    "PositiveBigIntegerField": "integer",
    "PositiveSmallIntegerField": "integer",
    "CharField": "text",
    "TextField": "text",
    "SlugField": "text",
    "EmailField": "text",
    "URLField": "text",
    "UUIDField": "text",
    "GenericIPAddressField": "text",
    "BooleanField": "boolean",
    "DateTimeField": "timestamp",
    "DateField": "date",
    "DecimalField": "decimal",
    "FloatField": "float",
    "JSONField": "json",
}


def public_type_of(field: models.Field) -> str:  # type: ignore[type-arg]
    internal = field.get_internal_type()
    if isinstance(field, models.ForeignKey):
        return public_type_of(field.target_field)
    try:
        return _FIELD_TYPES[internal]
    except KeyError:
        raise ValueError(f"{field}: no public type for {internal}; pass types={{...}}") from None


def model_column(
    model: type[models.Model], field_name: str, *, name: str | None = None, alias: str = "t", **options: str
) -> Column:
    """A catalog column for one model field, read through ``alias``."""
    field = model._meta.get_field(field_name)
    assert isinstance(field, models.Field)
    return Column(
        name=name or field_name,
        type=options.get("type") or public_type_of(field),
        expression=f'{alias}."{field.column}"',
        description=options.get("description") or str(field.help_text or field.verbose_name or ""),
    )


def register_model_table(
    name: str,
    model: type[models.Model],
    columns: Sequence[str | tuple[str, str]],
    *,
    description: str = "",
    descriptions: Mapping[str, str] | None = None,
    types: Mapping[str, str] | None = None,
    scope: Scope = Scope.PUBLIC,
    user_field: str | None = None,
    application_field: str | None = None,
    replace: bool = False,
) -> RegisteredTable:
    """Register a catalog table over one model. ``columns`` are field names,
    or (public name, field name) pairs. A private table names the fields
    holding the owning user and application."""
    descriptions = descriptions or {}
    types = types or {}
    built = []
    for entry in columns:
        public, field_name = (entry, entry) if isinstance(entry, str) else entry
        options = {"type": types.get(public, ""), "description": descriptions.get(public, "")}
        built.append(model_column(model, field_name, name=public, **{k: v for k, v in options.items() if v}))

    def owner(field_name: str | None) -> str | None:
        if field_name is None:
            return None
        return f't."{model._meta.get_field(field_name).column}"'  # type: ignore[union-attr]

    return register_table(
        Table(
            name=name,
            description=description,
            columns=tuple(built),
            source=f'"{model._meta.db_table}" AS t',
            scope=scope,
            user_column=owner(user_field),
            application_column=owner(application_field),
        ),
        replace=replace,
    )


def register_builtin_tables() -> None:
    entry = LedgerEntry._meta
    account = CreditAccount._meta

    def e(field_name: str) -> str:
        return f'e."{entry.get_field(field_name).column}"'  # type: ignore[union-attr]

    register_table(
        Table(
            name="credit_entries",
            description="Your credit ledger entries in the bound application, one per movement.",
            scope=Scope.PRIVATE,
            source=(
                f'"{entry.db_table}" AS e JOIN "{account.db_table}" AS a '
                f'ON a."{account.pk.column}" = e."{entry.get_field("account").column}"'
            ),
            user_column=f'a."{account.get_field("user").column}"',
            application_column=f'a."{account.get_field("application").column}"',
            columns=(
                Column("transaction_id", "integer", e("id"), "The entry's id (transactionId in credit events)."),
                Column("application_id", "text", f'a."{account.get_field("application").column}"', "Application."),
                Column("sequence", "integer", e("sequence"), "Per-account sequence, from 1, without gaps."),
                Column("type", "text", e("kind"), "grant deduction refund hold capture release expiry adjustment"),
                Column("amount", "integer", e("amount"), "Signed change of the balance."),
                Column("spent", "integer", e("spent"), "Credits consumed by this entry."),
                Column("balance_after", "integer", e("balance_after"), "Balance after the entry."),
                Column("lifetime_earned_after", "integer", e("lifetime_earned_after"), "Lifetime earned after it."),
                Column("lifetime_spent_after", "integer", e("lifetime_spent_after"), "Lifetime spent after it."),
                Column("action", "text", e("action"), "Event or admin action that caused it."),
                Column("reason", "text", e("reason"), "Reason given."),
                Column("actor_type", "text", e("actor_type"), "user, staff or system."),
                Column("reference", "text", e("reference"), "Request, job or query id."),
                Column("reverses", "integer", e("reverses"), "Entry this one reverses, if any."),
                Column("created_at", "timestamp", e("created_at"), "When it was written (UTC)."),
                Column("hash", "text", e("hash"), "SHA-256 chained to the previous entry."),
            ),
        ),
        replace=True,
    )
    register_model_table(
        "query_history",
        QueryRecord,
        [
            ("query_id", "id"),
            ("application_id", "application"),
            "sql",
            "status",
            "error_code",
            "error_message",
            "rows_returned",
            "truncated",
            "estimated_ms",
            "duration_ms",
            "created_at",
            "started_at",
            "finished_at",
        ],
        description="Your queries in the bound application (this one included, as running).",
        descriptions={"query_id": "queryId of the query events.", "sql": "The SQL as you sent it."},
        scope=Scope.PRIVATE,
        user_field="user",
        application_field="application",
        replace=True,
    )
