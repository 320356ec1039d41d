"""Alembic environment for statestore's own migrations.

Run programmatically by ``statestore.metastore.schema``: the caller's connection arrives
in ``config.attributes["connection"]`` (never a URL through configparser, where ``%``
in a password breaks), and versions are tracked in ``statestore_alembic_version`` so a
host's own ``alembic_version`` is never touched.
"""

from __future__ import annotations

from alembic import context

from statestore.metastore.tables import VERSION_TABLE, metadata


def _include_object(obj: object, name: str | None, type_: str, *_: object) -> bool:
    # Only ever look at our own tables: the host's tables are none of our business.
    if type_ == "table":
        return bool(name and name.startswith("statestore_"))
    return True


def run_migrations() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("statestore migrations run only through statestore.metastore.schema")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        include_object=_include_object,
        render_as_batch=connection.dialect.name == "sqlite",
        # One transaction for the whole upgrade where the database allows it. SQLite's
        # DDL is transactional, though Alembic assumes not: left to that, it commits
        # after each revision, ending the BEGIN IMMEDIATE that keeps a second process
        # from migrating at the same time (schema._migration_lock).
        transaction_per_migration=False,
        transactional_ddl=True if connection.dialect.name == "sqlite" else None,
    )
    with context.begin_transaction():
        context.run_migrations()


run_migrations()
