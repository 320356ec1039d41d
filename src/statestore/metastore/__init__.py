"""The metastore backend: state in SQLite, PostgreSQL or MySQL/MariaDB (SQLAlchemy 2).

Besides :class:`MetastoreStateBackend`, this package exposes the schema tools a host
application needs: :func:`upgrade`, :func:`downgrade`, :func:`current_revision` and
:func:`head_revision`.
"""

from statestore.metastore.backend import MetastoreStateBackend
from statestore.metastore.schema import current_revision, downgrade, head_revision, upgrade

__all__ = [
    "MetastoreStateBackend",
    "current_revision",
    "downgrade",
    "head_revision",
    "upgrade",
]
