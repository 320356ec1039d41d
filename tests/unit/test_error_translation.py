"""Driver messages -> statestore errors, for the cases a local server cannot produce.

The real-server tests (tests/integration/test_auth_errors.py) cover what the local
servers can be made to say; a wrong PostgreSQL password and a pg_hba.conf refusal need
password or reject rules the shared test server does not have, so their messages are
fed to the translator here, word for word as PostgreSQL and PgBouncer print them.
"""

from __future__ import annotations

import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from statestore.exceptions import BackendUnavailableError, SchemaOutOfDateError
from statestore.metastore.errors import translate_errors

PG = make_url("postgresql+psycopg://app:s3cret@db.example:5432/state")


def _raise(message: str) -> BackendUnavailableError:
    with pytest.raises(BackendUnavailableError) as caught, translate_errors(PG):
        raise sa_exc.OperationalError("SELECT 1", {}, Exception(message))
    return caught.value


@pytest.mark.parametrize(
    "message",
    [
        'connection failed: FATAL:  password authentication failed for user "app"',
        'FATAL:  no pg_hba.conf entry for host "10.0.0.7", user "app", database "state"',
        'FATAL:  role "app" does not exist',
        "FATAL:  SASL authentication failed",  # PgBouncer in front
    ],
)
def test_login_failures_say_authentication(message: str) -> None:
    error = _raise(message)
    assert type(error) is BackendUnavailableError
    text = str(error)
    assert "authentication failed for user 'app' at db.example:5432" in text
    assert "check user and password" in text
    assert "db upgrade" not in text
    assert "s3cret" not in text


def test_missing_table_is_still_schema_out_of_date() -> None:
    with pytest.raises(SchemaOutOfDateError) as caught, translate_errors(PG):
        raise sa_exc.OperationalError("SELECT 1", {}, Exception('relation "t" does not exist'))
    error = caught.value
    assert "db upgrade" in str(error)


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("permission denied for schema public", "USAGE and CREATE on schema public"),
        ("permission denied for table statestore_task_state", "table statestore_task_state"),
        (
            "(1142, \"INSERT command denied to user 'app'@'10.0.0.7' for table "
            '`state`.`statestore_task_state`")',
            "the INSERT privilege on state.statestore_task_state",
        ),
    ],
)
def test_privilege_failures_name_the_privilege(message: str, expected: str) -> None:
    error = _raise(message)
    assert type(error) is BackendUnavailableError
    assert "permission denied for user 'app'" in str(error)
    assert expected in str(error)


def test_asyncmy_on_a_connection_closed_while_opening_is_unavailable() -> None:
    """asyncmy raises a bare RuntimeError when the server closes the socket during the
    connect (seen behind a proxy whose database stopped): a 500 on the state server
    until it was translated. Any other RuntimeError is still a bug and passes through."""
    mysql = make_url("mysql+asyncmy://root:s3cret@db.example:3306/state")
    with pytest.raises(BackendUnavailableError) as caught, translate_errors(mysql):
        raise RuntimeError("Transport does not expose socket instance")
    assert "db.example:3306" in str(caught.value)
    assert "s3cret" not in str(caught.value)
    with pytest.raises(RuntimeError, match="something else"), translate_errors(mysql):
        raise RuntimeError("something else")
