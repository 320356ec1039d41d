"""``statestore db upgrade|downgrade|current|check`` against every database."""

from __future__ import annotations

from sqlalchemy.engine import URL

from statestore.metastore import head_revision
from tests.cli.conftest import Cli


def _url(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def test_upgrade_check_current_downgrade(cli: Cli, db_url: URL) -> None:
    url = _url(db_url)
    checked = cli("--url", url, "db", "check")
    assert checked.code == 1
    assert "db upgrade" in checked.stderr
    assert "--url" in checked.stderr
    assert checked.stderr.count("\n") == 1  # one line, no traceback

    assert cli("--url", url, "db", "upgrade").code == 0
    current = cli("--url", url, "--json", "db", "current")
    assert current.code == 0, current.stderr
    assert current.json()["current"] == head_revision()
    assert cli("--url", url, "db", "check").code == 0

    refused = cli("--url", url, "db", "downgrade", "base")  # stdin is not a terminal
    assert (refused.code, refused.stdout) == (2, ""), refused.stderr
    assert "needs --yes" in refused.stderr
    assert cli("--url", url, "db", "check").code == 0  # nothing was dropped
    down = cli("--url", url, "--json", "db", "downgrade", "base", "--yes")
    assert down.code == 0, down.stderr
    assert down.json() == {"database": down.json()["database"], "from": head_revision(), "to": None}


def test_unreachable_server_is_one_line_error(cli: Cli) -> None:
    result = cli("--url", "postgresql://user:hunter2@127.0.0.1:1/x", "db", "current")
    assert result.code == 1
    assert result.stderr.startswith("statestore: error: ")
    assert "127.0.0.1" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert result.stderr.count("\n") == 1


def test_bad_url_is_one_line_error(cli: Cli) -> None:
    result = cli("--url", "nosuchdb://x", "db", "upgrade")
    assert result.code == 1
    assert "unsupported database" in result.stderr or "not a database URL" in result.stderr
    assert "Traceback" not in result.stderr
