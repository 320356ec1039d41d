"""Login and privilege failures are named as such, on the real servers.

Before, PostgreSQL's 'role "x" does not exist' matched the missing-table rule and came
out as "no statestore tables; run db upgrade" -- even from `db upgrade` itself.

Not tested here: a wrong *password* on PostgreSQL. The local server authenticates
loopback clients with ``trust`` (any password is accepted), and changing its pg_hba.conf
would change it for everyone sharing it; the message classification for
'password authentication failed' and 'no pg_hba.conf entry' is covered by
tests/unit/test_error_translation.py instead.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import URL

from statestore import StateStore, TaskScope
from statestore.exceptions import BackendUnavailableError, SchemaOutOfDateError
from statestore.metastore import upgrade
from tests.integration.conftest import _server

SCOPE = TaskScope("etl", "r1", "load")
_names = itertools.count()


def _name(prefix: str) -> str:
    return f"{prefix}_{os.getpid()}_{next(_names)}"


def _text(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _read(url: URL) -> None:
    with StateStore(_text(url)) as store:
        store.task_state(SCOPE).get("k")


def _assert_auth_failure(exc: BaseException, user: str, secret: str | None = None) -> None:
    assert isinstance(exc, BackendUnavailableError)
    assert not isinstance(exc, SchemaOutOfDateError)
    text = str(exc)
    assert f"authentication failed for user {user!r} at 127.0.0.1" in text
    assert "check user and password" in text
    assert "db upgrade" not in text
    if secret is not None:
        assert secret not in text


@pytest.fixture
def pg_url() -> Iterator[URL]:
    server = _server("postgresql")
    url = server.create()
    try:
        yield url
    finally:
        server.drop(url)


@pytest.fixture
def mysql_url() -> Iterator[URL]:
    server = _server("mysql")
    url = server.create()
    try:
        yield url
    finally:
        server.drop(url)


@pytest.mark.postgresql
def test_postgres_unknown_role_is_an_authentication_failure(pg_url: URL) -> None:
    role = _name("ss_no_such_role")
    url = pg_url.set(username=role)
    with pytest.raises(BackendUnavailableError) as read:
        _read(url)
    _assert_auth_failure(read.value, role)
    with pytest.raises(BackendUnavailableError) as upgraded:  # `db upgrade` too: no circle
        upgrade(url)
    _assert_auth_failure(upgraded.value, role)


@pytest.mark.postgresql
def test_postgres_missing_schema_privilege_is_one_line(pg_url: URL) -> None:
    role = _name("ss_no_create")
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    schema = pg_url.query["options"].split("=", 1)[1]  # type: ignore[union-attr]
    try:
        # Without USAGE, PostgreSQL finds no schema to create in at all.
        with pytest.raises(BackendUnavailableError) as unusable:
            upgrade(pg_url.set(username=role))
        assert "no schema on its search_path is usable" in str(unusable.value)
        assert f"GRANT USAGE, CREATE ON SCHEMA name TO {role}" in str(unusable.value)
        with admin.connect() as conn:  # USAGE but not CREATE: the classic message
            conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA "{schema}" TO "{role}"')
        with pytest.raises(BackendUnavailableError) as denied:
            upgrade(pg_url.set(username=role))
        text = str(denied.value)
        assert f"permission denied for user {role!r}" in text
        assert f"USAGE and CREATE on schema {schema}" in text
        assert f"GRANT USAGE, CREATE ON SCHEMA {schema} TO {role}" in text
        assert "\n" not in text
        assert "CREATE TABLE" not in text  # no SQL dumped
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP OWNED BY "{role}"')  # its grants, so it can go
            conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
        admin.dispose()


@pytest.mark.postgresql
@pytest.mark.slow
def test_cli_db_upgrade_with_unknown_role_says_authentication(pg_url: URL) -> None:
    import subprocess
    import sys

    role = _name("ss_cli_role")
    url = pg_url.set(username=role).render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith("STATESTORE")}
    done = subprocess.run(
        [sys.executable, "-m", "statestore", "--url", url, "db", "upgrade"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 1
    assert done.stdout == ""
    assert f"authentication failed for user '{role}'" in done.stderr
    assert "no statestore tables" not in done.stderr
    assert done.stderr.count("\n") == 1


@pytest.mark.mysql
def test_mariadb_unknown_user_and_wrong_password(mysql_url: URL) -> None:
    user = _name("ss_user")
    admin = create_engine(mysql_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'right-pw'")
        conn.exec_driver_sql(f"GRANT ALL ON `{mysql_url.database}`.* TO '{user}'@'127.0.0.1'")
    try:
        with pytest.raises(BackendUnavailableError) as wrong:
            _read(mysql_url.set(username=user, password="wrong-pw-1234"))
        _assert_auth_failure(wrong.value, user, secret="wrong-pw-1234")
        unknown = _name("ss_nobody")
        with pytest.raises(BackendUnavailableError) as nobody:
            upgrade(mysql_url.set(username=unknown, password="pw"))
        _assert_auth_failure(nobody.value, unknown)
        good = mysql_url.set(username=user, password="right-pw")
        upgrade(good)  # the right password works: the failures above were the password
        with StateStore(_text(good)) as store:
            store.task_state(SCOPE).set("k", 1)
            assert store.task_state(SCOPE).get("k") == 1
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        admin.dispose()


@pytest.mark.mysql
def test_mariadb_missing_create_privilege_names_it(mysql_url: URL) -> None:
    user = _name("ss_reader")
    admin = create_engine(mysql_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY 'pw'")
        conn.exec_driver_sql(f"GRANT SELECT ON `{mysql_url.database}`.* TO '{user}'@'127.0.0.1'")
    try:
        with pytest.raises(BackendUnavailableError) as denied:
            upgrade(mysql_url.set(username=user, password="pw"))
        text = str(denied.value)
        assert f"permission denied for user {user!r}" in text
        assert f"the CREATE privilege on {mysql_url.database}.statestore_" in text
        assert not isinstance(denied.value, SchemaOutOfDateError)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1'")
        admin.dispose()
