"""Ledger entries are append-only: the database refuses UPDATE, DELETE and
(on PostgreSQL) TRUNCATE of credits_ledgerentry, whoever asks.

UPDATE is refused always. DELETE and TRUNCATE (a purge of a whole test or
staging database) pass only in a PostgreSQL session that explicitly sets
``ledgercore.ledger_purge = 'on'``; the test suite's database flush does.
On SQLite only UPDATE is refused by a trigger (a trigger cannot see a
session setting there); the model refuses deletes.
"""

from django.db import migrations

POSTGRES_INSTALL = """
CREATE OR REPLACE FUNCTION credits_ledgerentry_immutable() RETURNS trigger AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE')
       AND coalesce(current_setting('ledgercore.ledger_purge', true), '') = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'credits_ledgerentry is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER credits_ledgerentry_no_update_delete
    BEFORE UPDATE OR DELETE ON credits_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION credits_ledgerentry_immutable();
CREATE TRIGGER credits_ledgerentry_no_truncate
    BEFORE TRUNCATE ON credits_ledgerentry
    FOR EACH STATEMENT EXECUTE FUNCTION credits_ledgerentry_immutable();
"""
POSTGRES_REMOVE = """
DROP TRIGGER IF EXISTS credits_ledgerentry_no_truncate ON credits_ledgerentry;
DROP TRIGGER IF EXISTS credits_ledgerentry_no_update_delete ON credits_ledgerentry;
DROP FUNCTION IF EXISTS credits_ledgerentry_immutable();
"""
SQLITE_INSTALL = [
    """CREATE TRIGGER credits_ledgerentry_no_update BEFORE UPDATE ON credits_ledgerentry
       BEGIN SELECT RAISE(ABORT, 'credits_ledgerentry is append-only: UPDATE refused'); END;""",
]
SQLITE_REMOVE = [
    "DROP TRIGGER IF EXISTS credits_ledgerentry_no_update;",
]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_INSTALL, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_INSTALL:
            schema_editor.execute(statement)


def remove(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute(POSTGRES_REMOVE, params=None)
    elif vendor == "sqlite":
        for statement in SQLITE_REMOVE:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("credits", "0001_ledger")]
    operations = [migrations.RunPython(install, remove)]
