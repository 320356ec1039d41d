"""``statestore db``: create, migrate and inspect the metastore schema."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from statestore.cli.common import (
    confirm,
    console,
    echo_json,
    ensure_database_exists,
    escape,
    load_config,
    state_of,
)
from statestore.exceptions import (
    BackendUnavailableError,
    SchemaOutOfDateError,
    UnsupportedOperationError,
)

if TYPE_CHECKING:
    from types import ModuleType

    from sqlalchemy.engine import URL

__all__ = ["app"]


def _schema() -> ModuleType:
    """The metastore's schema module, imported when a db command runs (it loads
    SQLAlchemy and Alembic: ``statestore --help`` must not wait for them)."""
    from statestore.metastore import schema  # noqa: PLC0415 - on use (see above)

    return schema


def derive_urls(url: str) -> tuple[URL, URL]:
    """``statestore.metastore.engine.derive_urls``, imported on use (see ``_schema``)."""
    from statestore.metastore.engine import derive_urls as derive  # noqa: PLC0415

    return derive(url)


app = typer.Typer(help="Create, migrate and check the database schema.", no_args_is_help=True)


def _target(ctx: typer.Context, *, read_only: bool = False) -> tuple[str, float]:
    """The database URL and ``timeout_seconds`` of the configuration.

    ``read_only``: a SQLite file that does not exist is an error, not created. A state
    server's URL is refused: its database is not reachable from here, and going on would
    migrate whatever database the rest of the configuration names (the SQLite default).
    """
    config = load_config(state_of(ctx))
    if config.client.url:
        command = ctx.info_name
        raise UnsupportedOperationError(
            f"`db {command}` cannot run through a state server ({config.client.url}): "
            f"run `statestore --url <database URL> db {command}` where the database is "
            "reachable (`db check` works through a server: it asks /readyz)"
        )
    derive_urls(config.database.url)  # validates, with a clear error for unsupported URLs
    if read_only:
        ensure_database_exists(config)
    return config.database.url, config.database.timeout_seconds


def _shown(url: str) -> str:
    return derive_urls(url)[0].render_as_string(hide_password=True)


@app.command()
def upgrade(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(metavar="REVISION", help="Target revision.")] = "head",
) -> None:
    """Create the statestore tables or migrate them to this release."""
    url, timeout = _target(ctx)
    before = _schema().current_revision(url, timeout=timeout)
    _schema().upgrade(url, revision, timeout=timeout)
    after = _schema().current_revision(url, timeout=timeout)
    if state_of(ctx).json:
        echo_json({"database": _shown(url), "from": before, "to": after})
    else:
        console.print(f"{escape(_shown(url))}: schema {before or '(none)'} -> {after}")


@app.command()
def downgrade(
    ctx: typer.Context,
    revision: Annotated[
        str, typer.Argument(metavar="REVISION", help="Target revision; 'base' drops all.")
    ],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Migrate the schema down to REVISION ('base' removes every statestore table).

    Downgrading can drop tables and the state in them, so it asks first; a script
    without a terminal must pass --yes.
    """
    url, timeout = _target(ctx)
    before = _schema().current_revision(url, timeout=timeout)
    confirm(
        f"Downgrade {_shown(url)} from {before or '(none)'} to {revision}? "
        "State in dropped tables is lost.",
        yes=yes,
        what="db downgrade",
    )
    _schema().downgrade(url, revision, timeout=timeout)
    after = _schema().current_revision(url, timeout=timeout)
    if state_of(ctx).json:
        echo_json({"database": _shown(url), "from": before, "to": after})
    else:
        console.print(f"{escape(_shown(url))}: schema {before or '(none)'} -> {after or '(none)'}")


@app.command()
def current(ctx: typer.Context) -> None:
    """Show the schema revision of the database and the one this release needs."""
    url, timeout = _target(ctx, read_only=True)
    revision = _schema().current_revision(url, timeout=timeout)
    head = _schema().head_revision()
    if state_of(ctx).json:
        echo_json({"database": _shown(url), "current": revision, "head": head})
    else:
        console.print(f"{escape(_shown(url))}: current {revision or '(none)'}, head {head}")


def _check_server(ctx: typer.Context, server: str, timeout: float) -> None:
    """``db check`` through a state server: its ``/readyz`` (no token needed)."""
    import httpx  # noqa: PLC0415 - the client extra, only for a server URL

    from statestore import wire  # noqa: PLC0415
    from statestore.backends.http_messages import error_of  # noqa: PLC0415

    shown = server.rstrip("/")
    try:
        answer = httpx.get(shown + wire.READYZ, timeout=timeout)
    except httpx.TransportError as exc:
        raise BackendUnavailableError(
            f"the state server at {shown} did not answer ({type(exc).__name__})"
        ) from exc
    up_to_date = answer.status_code == 200
    if state_of(ctx).json:
        echo_json({"server": shown, "up_to_date": up_to_date})
    if not up_to_date:
        raise error_of(answer, shown)
    if not state_of(ctx).json:
        console.print(f"{escape(shown)}: ready (its database is reachable and up to date)")


@app.command()
def check(ctx: typer.Context) -> None:
    """Exit 0 if the schema is up to date, else print what to run and exit 1.

    With a state server's URL: whether the server is ready (its /readyz).
    """
    config = load_config(state_of(ctx))
    if config.client.url:
        _check_server(ctx, config.client.url, config.client.timeout_seconds)
        return
    url, timeout = _target(ctx, read_only=True)
    revision = _schema().current_revision(url, timeout=timeout)
    head = _schema().head_revision()
    if state_of(ctx).json:
        echo_json(
            {
                "database": _shown(url),
                "current": revision,
                "head": head,
                "up_to_date": revision == head,
            }
        )
    if revision != head:
        raise SchemaOutOfDateError(
            f"{_shown(url)} is at {revision or 'no schema'}, this release needs {head}; "
            f"run `statestore --url '{_shown(url)}' db upgrade`"
        )
    if not state_of(ctx).json:
        console.print(f"{escape(_shown(url))}: up to date ({head})")
