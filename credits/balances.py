"""The balance of an account as it is read on every connection."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import connection
from django.db.models import Field

from credits.models import CreditAccount

BALANCE_FIELDS = ("balance", "lifetime_earned", "lifetime_spent", "last_sequence")


@dataclass(frozen=True)
class Balance:
    application_id: str
    balance: int
    lifetime_earned: int
    lifetime_spent: int
    sequence: int


def _column(name: str) -> str:
    field = CreditAccount._meta.get_field(name)
    assert isinstance(field, Field) and field.column, f"CreditAccount.{name} is not a column"
    return connection.ops.quote_name(field.column)


def get_balance(user_pk: int, application_id: str) -> Balance:
    return get_balances([(user_pk, application_id)])[0]


def get_balances(accounts: Sequence[tuple[int, str]]) -> list[Balance]:
    """The balance of each (user, application), in order, in one statement:
    every connection reads its balance on the process's one ORM thread (the
    ORM would spend ~0.4 ms building each), and a connection storm's reads
    go there together (``realtime.batching``)."""
    wanted = list(dict.fromkeys(accounts))
    params: list[int | str] = []
    for user_pk, application_id in wanted:
        params += [user_pk, application_id]
    with connection.cursor() as cursor:
        cursor.execute(_statement(connection.vendor, len(wanted)), params)
        rows = {(row[0], row[1]): row[2:] for row in cursor.fetchall()}
    balances = []
    for user_pk, application_id in accounts:
        row = rows.get((user_pk, application_id))
        values = (int(value) for value in row) if row is not None else (0, 0, 0, 0)
        balances.append(Balance(application_id, *values))
    return balances


@functools.cache
def _statement(vendor: str, accounts: int) -> str:
    """The statement for ``accounts`` (user, application) pairs in
    ``vendor``'s quoting; names come from the model, ids are parameters."""
    columns = ", ".join(f"c.{_column(name)}" for name in BALANCE_FIELDS)
    table = connection.ops.quote_name(CreditAccount._meta.db_table)
    values = ", ".join(["(%s, %s)"] * accounts)
    return (
        f"WITH r(user_pk, app) AS (VALUES {values})"  # noqa: S608 - names from the model
        f" SELECT r.user_pk, r.app, {columns} FROM r JOIN {table} c"
        f" ON c.{_column('user')} = r.user_pk AND c.{_column('application')} = r.app"
    )
