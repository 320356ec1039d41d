"""``serve`` (the state server under uvicorn) and ``token mint|keygen``.

Both need the ``server`` extra; without it they say so in one line. ``serve`` passes its
settings to uvicorn's worker processes through ``STATESTORE_SERVE_*`` variables and an
app factory, so ``--workers N`` builds the same app in every worker (each its own pool).
"""

from __future__ import annotations

import functools
import getpass
import json
import logging
import os
import re
import socket
from datetime import datetime, timedelta, timezone
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from statestore.cli.common import CliUsageError, console, echo_json, state_of
from statestore.exceptions import ConfigError

__all__ = ["app_from_environment", "register", "token_app"]

token_app = typer.Typer(help="Tokens for the state server.", no_args_is_help=True)

_URL = "STATESTORE_SERVE_URL"
_PUBLIC_KEY = "STATESTORE_SERVE_PUBLIC_KEY_FILE"
_SECRET = "STATESTORE_SERVE_SHARED_SECRET_FILE"  # noqa: S105 - a variable name
_ISSUER = "STATESTORE_SERVE_ISSUER"
_READ_ONLY = "STATESTORE_SERVE_READ_ONLY"


class LogFormat(str, Enum):
    text = "text"
    json = "json"


def _need_server_extra() -> None:
    try:
        import fastapi  # noqa: F401, PLC0415
        import jwt  # noqa: F401, PLC0415
        import uvicorn  # noqa: F401, PLC0415
    except ImportError as exc:
        raise ConfigError(
            f"the state server needs the server extra ({exc.name} is missing): "
            "pip install 'statestore[server]'"
        ) from None


def app_from_environment() -> Any:
    """The app ``serve`` runs, built in each uvicorn worker from its variables."""
    from statestore.config import StateStoreConfig  # noqa: PLC0415
    from statestore.server import SharedSecret, create_app  # noqa: PLC0415
    from statestore.store import StateStore  # noqa: PLC0415

    config = StateStoreConfig()
    url = os.environ.get(_URL)
    if url:
        config = config.with_database_url(url)
    secret_file = os.environ.get(_SECRET)
    return create_app(
        StateStore(config=config, updated_by="statestore serve"),
        public_key=os.environ.get(_PUBLIC_KEY) or None,
        shared_secret=SharedSecret.from_file(secret_file) if secret_file else None,
        issuer=os.environ.get(_ISSUER) or None,
        read_only=os.environ.get(_READ_ONLY) == "1",
    )


class _JsonFormatter(logging.Formatter):
    """One JSON object per line (for log shippers); the message is uvicorn's own."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def _log_config(log_format: LogFormat) -> dict[str, Any] | None:
    if log_format is LogFormat.text:
        return None  # uvicorn's own
    handler = {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
    loggers = ("uvicorn", "uvicorn.error", "uvicorn.access", "statestore")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": f"{__name__}._JsonFormatter"}},
        "handlers": {"default": handler},
        "loggers": {name: {"handlers": ["default"], "level": "INFO", "propagate": False}
                    for name in loggers},
    }  # fmt: skip


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    public_key: Annotated[
        Path | None, typer.Option(help="Ed25519 public key (PEM) tokens are verified with.")
    ] = None,
    shared_secret_file: Annotated[
        Path | None, typer.Option(help="A file holding an HS256 secret, instead of a key.")
    ] = None,
    issuer: Annotated[str | None, typer.Option(help="Require this iss claim.")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="TLS certificate (PEM).")] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="TLS private key (PEM).")] = None,
    root_path: Annotated[str, typer.Option(help="Path prefix behind a reverse proxy.")] = "",
    log_format: Annotated[LogFormat, typer.Option(help="text or json.")] = LogFormat.text,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only",
            help="Refuse every write, delete, clear, cleanup and asset change (API and web "
            "UI; 403 ReadOnlyServerError); reads and dry runs still work.",
        ),
    ] = False,
    request_timeout: Annotated[
        float,
        typer.Option(
            min=0,
            help="Seconds a request may take to arrive (headers and body) before a 408 "
            "and a closed connection: slow clients; 0 = no deadline.",
        ),
    ] = 30.0,
    keep_alive_timeout: Annotated[
        int,
        typer.Option(min=1, help="Seconds an idle kept-alive connection stays open (clients: 4)."),
    ] = 5,
) -> None:
    """Run the state server (HTTP API under /api/v1, web UI at /ui) with uvicorn."""
    _need_server_extra()
    import uvicorn  # noqa: PLC0415

    from statestore.server.protocol import DeadlineHttpToolsProtocol  # noqa: PLC0415

    if (public_key is None) == (shared_secret_file is None):
        raise CliUsageError("serve needs --public-key FILE or --shared-secret-file FILE")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise CliUsageError("TLS needs both --ssl-certfile and --ssl-keyfile")
    for path in (public_key, shared_secret_file, ssl_certfile, ssl_keyfile):
        if path is not None and not path.is_file():
            raise CliUsageError(f"no such file: {path}")
    url = state_of(ctx).url
    env = {_URL: url or "", _PUBLIC_KEY: str(public_key or ""),
           _SECRET: str(shared_secret_file or ""), _ISSUER: issuer or "",
           _READ_ONLY: "1" if read_only else ""}  # fmt: skip
    os.environ.update(env)  # read by app_from_environment in every worker
    app_from_environment()  # fail here, in one line, rather than in each worker
    log_config = _log_config(log_format)
    # uvicorn's httptools protocol with a request deadline (statestore.server.protocol);
    # a partial of a module-level class, so --workers N can pickle it to each worker.
    http = functools.partial(DeadlineHttpToolsProtocol, request_timeout=request_timeout)
    uvicorn.run(
        f"{__name__}:app_from_environment", factory=True, host=host, port=port,
        # The prefix is the ASGI server's to set (FastAPI deprecated its own root_path):
        # uvicorn puts it in every request's scope, where routing and the OpenAPI
        # document's servers entry read it.
        workers=workers, http=http, loop="uvloop", root_path=root_path,  # type: ignore[arg-type]
        timeout_keep_alive=keep_alive_timeout,
        ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
        ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None,
        proxy_headers=bool(root_path), server_header=False,
        log_config=log_config or uvicorn.config.LOGGING_CONFIG,
    )  # fmt: skip


_TTL = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _ttl(text: str) -> timedelta:
    match = _TTL.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise CliUsageError(
            f"--ttl must be a positive duration like 900, 15m, 1h or 2d, not {text!r}"
        )
    return timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])


def _task_subject(scope: Any) -> str:
    mapped = f"[{scope.map_key}]" if scope.map_key is not None else f"[{scope.map_index}]"
    return f"task:{scope.dag_id}/{scope.run_id}/{scope.task_id}" + (
        "" if scope.map_key is None and scope.map_index == -1 else mapped
    )


@token_app.command("mint")
def mint(
    ctx: typer.Context,
    private_key: Annotated[Path | None, typer.Option(help="Ed25519 private key (PEM).")] = None,
    shared_secret_file: Annotated[
        Path | None, typer.Option(help="A file holding the HS256 secret, instead.")
    ] = None,
    admin: Annotated[
        bool, typer.Option("--admin", help="An admin token (CLI, maintenance).")
    ] = False,
    dag: Annotated[str | None, typer.Option(help="The task instance's DAG id.")] = None,
    run: Annotated[str | None, typer.Option(help="Its run id.")] = None,
    task: Annotated[str | None, typer.Option(help="Its task id.")] = None,
    map_index: Annotated[int, typer.Option(help="Its map index (-1: not mapped).")] = -1,
    map_key: Annotated[str | None, typer.Option(help="Its map key, instead.")] = None,
    all_map_indices: Annotated[
        bool, typer.Option("--all-map-indices", help="Every map index of the task.")
    ] = False,
    read_asset: Annotated[
        list[str] | None, typer.Option(help="An asset it may read (repeat).")
    ] = None,
    write_asset: Annotated[
        list[str] | None, typer.Option(help="An asset it may read and write (repeat).")
    ] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime: seconds, or 15m, 1h, 2d.")] = "1h",
    subject: Annotated[str | None, typer.Option(help="The sub claim (default: derived).")] = None,
    issuer: Annotated[str | None, typer.Option(help="The iss claim.")] = None,
) -> None:
    """Print a signed token for one task instance (and its assets), or --admin."""
    _need_server_extra()
    from statestore.scopes import TaskScope  # noqa: PLC0415
    from statestore.server import Grant, SharedSecret, load_private_key, mint_token  # noqa: PLC0415

    if (private_key is None) == (shared_secret_file is None):
        raise CliUsageError("token mint needs --private-key FILE or --shared-secret-file FILE")
    key = (
        SharedSecret.from_file(shared_secret_file)
        if shared_secret_file is not None
        else load_private_key(private_key)  # type: ignore[arg-type]
    )
    named = [dag, run, task]
    if admin:
        if any(v is not None for v in named) or read_asset or write_asset:
            raise CliUsageError("--admin grants everything: give no task or asset options")
        grant = Grant(subject or f"admin:{getpass.getuser()}@{socket.gethostname()}", admin=True)
    else:
        if any(v is None for v in named):
            raise CliUsageError("a task token needs --dag, --run and --task (or --admin)")
        assert dag is not None
        assert run is not None
        assert task is not None
        scope = TaskScope(dag, run, task, map_index, map_key=map_key)
        grant = Grant(
            subject or _task_subject(scope), task=scope, all_map_indices=all_map_indices,
            read_assets=frozenset(read_asset or ()), write_assets=frozenset(write_asset or ()),
        )  # fmt: skip
    lifetime = _ttl(ttl)
    now = datetime.now(timezone.utc)
    token = mint_token(grant, key, ttl=lifetime, issuer=issuer, now=now)
    if state_of(ctx).json:
        echo_json({"token": token, "subject": grant.subject,
                   "expires_at": (now + lifetime).isoformat(timespec="seconds")})  # fmt: skip
    else:
        typer.echo(token)


@token_app.command("keygen")
def keygen(
    ctx: typer.Context,
    private_key: Annotated[Path, typer.Option(help="Where to write the private key.")],
    public_key: Annotated[Path, typer.Option(help="Where to write the public key.")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write a new Ed25519 key pair (PEM): the private key for minters, mode 0600."""
    _need_server_extra()
    from statestore.server import generate_keypair  # noqa: PLC0415

    for path in (private_key, public_key):
        if path.exists() and not force:
            raise CliUsageError(f"{path} exists; pass --force to overwrite it")
    private_pem, public_pem = generate_keypair()
    try:
        fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_pem)
        os.chmod(private_key, 0o600)  # O_CREAT's mode does not apply to an existing file
        public_key.write_bytes(public_pem)
    except OSError as exc:
        raise ConfigError(f"cannot write the key pair: {exc}") from None
    if state_of(ctx).json:
        echo_json({"private_key": str(private_key), "public_key": str(public_key)})
    else:
        console.print(f"Wrote {private_key} (keep it secret) and {public_key} (for servers).")


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``token`` to the root command."""
    app.command("serve")(serve)
    app.add_typer(token_app, name="token")
