"""``statestore token keygen|mint`` and ``serve``'s refusals, through the real CLI."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from statestore.cli import main
from statestore.scopes import TaskScope
from statestore.server.auth import TokenVerifier, load_public_key


def test_keygen_then_mint_a_task_token(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    private, public = tmp_path / "k.pem", tmp_path / "k.pub"
    assert (
        main(["token", "keygen", "--private-key", str(private), "--public-key", str(public)]) == 0
    )
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    capsys.readouterr()
    args = [
        "--json",
        "token",
        "mint",
        "--private-key",
        str(private),
        "--dag",
        "d",
        "--run",
        "r",
        "--task",
        "t",
        "--map-index",
        "2",
        "--read-asset",
        "in",
        "--write-asset",
        "out",
        "--write-asset",
        "out2",
        "--ttl",
        "15m",
    ]
    assert main(args) == 0
    printed = json.loads(capsys.readouterr().out)
    grant = TokenVerifier(load_public_key(public)).verify(printed["token"])
    assert grant.subject == printed["subject"] == "task:d/r/t[2]"
    assert grant.task == TaskScope("d", "r", "t", 2)
    assert (grant.admin, grant.all_map_indices) == (False, False)
    assert grant.read_assets == {"in"}
    assert grant.write_assets == {"out", "out2"}
    again = ["token", "keygen", "--private-key", str(private), "--public-key", str(public)]
    assert main(again) == 2  # refuses to overwrite a key without --force
    assert "exists" in capsys.readouterr().err


def test_mint_with_a_shared_secret_and_admin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from statestore.server import SharedSecret

    secret = tmp_path / "secret"
    secret.write_text("s" * 40 + "\n")
    assert main(["token", "mint", "--shared-secret-file", str(secret), "--admin"]) == 0
    token = capsys.readouterr().out.strip()
    grant = TokenVerifier(SharedSecret.from_file(secret)).verify(token)
    assert grant.admin is True
    (tmp_path / "short").write_text("short")
    assert main(["token", "mint", "--shared-secret-file", str(tmp_path / "short"), "--admin"]) == 1
    assert "at least 32" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["token", "mint", "--admin"], "--private-key FILE or --shared-secret-file"),
        (
            ["token", "mint", "--shared-secret-file", "{secret}", "--dag", "d"],
            "--dag, --run and --task",
        ),
        (
            ["token", "mint", "--shared-secret-file", "{secret}", "--admin", "--dag", "d"],
            "grants everything",
        ),
        (["token", "mint", "--shared-secret-file", "{secret}", "--admin", "--ttl", "0"], "--ttl"),
        (["serve"], "--public-key FILE or --shared-secret-file"),
        (["serve", "--public-key", "{missing}"], "no such file"),
    ],
)
def test_usage_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * 40)
    filled = [a.format(secret=secret, missing=tmp_path / "missing.pem") for a in args]
    assert main(filled) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
