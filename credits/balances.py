"""The balance of an account as it is read on every connection."""

from __future__ import annotations

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
    # One parameterised statement: every connection reads its balance on the
    # process's one ORM thread, where the ORM would spend ~0.4 ms building it.
    columns = ", ".join(_column(name) for name in BALANCE_FIELDS)
    where = f"{_column('user')} = %s AND {_column('application')} = %s"
    table = connection.ops.quote_name(CreditAccount._meta.db_table)
    with connection.cursor() as cursor:
        sql = f"SELECT {columns} FROM {table} WHERE {where}"  # noqa: S608 - names from the model
        cursor.execute(sql, [user_pk, application_id])
        row = cursor.fetchone()
    if row is None:
        return Balance(application_id, 0, 0, 0, 0)
    return Balance(application_id, *(int(value) for value in row))
