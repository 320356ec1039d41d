"""Tokens: minting, verifying, and the one dependency every state and admin route uses.

A token is a signed JWT whose claims are a :class:`~statestore.wire.Grant` (one task
instance, the assets it may read and write, or ``admin``) plus ``aud``, ``exp``, ``iat``,
``jti`` and optionally ``iss``. Asymmetric by default (EdDSA over Ed25519): whoever
schedules tasks holds the private key and mints; servers hold only the public key, so a
compromised server cannot mint. A shared secret (HS256) is an option for one-box setups.

Verification accepts exactly one algorithm, the one the configured key is for: a token
whose header says ``none``, or says HS256 while the server holds an Ed25519 public key
(the classic algorithm-confusion attack), is refused before any claim is read.

Tokens are never logged: errors name what was wrong with a token, never the token.
"""

from __future__ import annotations

import enum
import hashlib
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from starlette.requests import Request

from statestore import wire
from statestore.exceptions import (
    AccessDeniedError,
    AuthenticationError,
    ConfigError,
    InvalidTypeError,
    InvalidValueError,
    ReadOnlyServerError,
)
from statestore.scopes import AssetScope, StateScope, TaskScope, writer_name

__all__ = [
    "DEFAULT_TTL",
    "LEEWAY_S",
    "Access",
    "Need",
    "SharedSecret",
    "TokenVerifier",
    "authorize",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "mint_token",
]

DEFAULT_TTL = timedelta(hours=1)
"""How long a minted token lives unless told otherwise: a task run, not a deployment."""

LEEWAY_S = 10
"""Clock skew tolerated on ``exp``/``iat`` between the minting host and the server."""

MIN_SECRET_BYTES = 32  # HS256 with less than 256 bits of key is guessable offline


@dataclass(frozen=True)
class SharedSecret:
    """An HS256 key shared by minter and server (both can mint: prefer Ed25519)."""

    value: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.value, bytes):
            raise InvalidTypeError("a shared secret is bytes")
        if len(self.value) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"the shared secret is {len(self.value)} bytes; use at least "
                f"{MIN_SECRET_BYTES} random bytes (e.g. `openssl rand -hex 32`)"
            )

    def __repr__(self) -> str:
        return "SharedSecret(***)"  # never print a key

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> SharedSecret:
        """The secret in a file (surrounding whitespace, such as a final newline, dropped)."""
        return cls(_read(path, "shared secret file").strip())


SigningKey = Ed25519PrivateKey | SharedSecret
VerifyingKey = Ed25519PublicKey | SharedSecret


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} {os.fspath(path)!r}: {exc.strerror}") from None


def _pem(source: str | bytes | os.PathLike[str]) -> bytes:
    """PEM text given inline, or the path of a file holding it."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.lstrip().startswith("-----BEGIN"):
        return source.encode()
    return _read(source, "key file")


def load_private_key(source: str | bytes | os.PathLike[str] | Ed25519PrivateKey) -> SigningKey:
    """An Ed25519 private key from PEM text, PEM bytes or a PEM file's path."""
    if isinstance(source, Ed25519PrivateKey):
        return source
    try:
        key = serialization.load_pem_private_key(_pem(source), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"the private key is {type(key).__name__}; statestore signs with Ed25519")
    return key


def load_public_key(source: str | bytes | os.PathLike[str] | Ed25519PublicKey) -> VerifyingKey:
    """An Ed25519 public key from PEM text, PEM bytes or a PEM file's path."""
    if isinstance(source, Ed25519PublicKey):
        return source
    try:
        key = serialization.load_pem_public_key(_pem(source))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"not a PEM public key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"the public key is {type(key).__name__}; statestore verifies Ed25519")
    return key


def generate_keypair() -> tuple[bytes, bytes]:
    """A new Ed25519 key pair as ``(private PEM, public PEM)``."""
    private = Ed25519PrivateKey.generate()
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem


def _algorithm(key: SigningKey | VerifyingKey) -> str:
    return "HS256" if isinstance(key, SharedSecret) else "EdDSA"


def _raw(key: SigningKey | VerifyingKey) -> Any:
    return key.value if isinstance(key, SharedSecret) else key


def mint_token(
    grant: wire.Grant,
    private_key: SigningKey | str | bytes | os.PathLike[str],
    *,
    ttl: timedelta = DEFAULT_TTL,
    issuer: str | None = None,
    now: datetime | None = None,
) -> str:
    """A signed token carrying ``grant``, valid for ``ttl`` from ``now``.

    ``private_key``: an Ed25519 private key (object, PEM text or a PEM file's path), or a
    :class:`SharedSecret`. Each token gets a random ``jti``.
    """
    if not isinstance(grant, wire.Grant):
        raise InvalidTypeError(f"grant must be a wire.Grant, not {type(grant).__name__}")
    if not isinstance(ttl, timedelta):
        raise InvalidTypeError(f"ttl must be a timedelta, not {type(ttl).__name__}")
    if ttl <= timedelta(0):
        raise InvalidValueError(f"ttl must be positive, not {ttl}")
    key = private_key if isinstance(private_key, SharedSecret) else load_private_key(private_key)
    issued = now or datetime.now(timezone.utc)
    claims: dict[str, Any] = {
        **grant.claims(),
        "aud": wire.TOKEN_AUDIENCE,
        "iat": int(issued.timestamp()),
        "exp": int((issued + ttl).timestamp()),
        "jti": uuid.uuid4().hex,
    }
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, _raw(key), algorithm=_algorithm(key))


_VERIFIED_TOKENS = 4096
"""Verified tokens remembered per server process (each a few hundred bytes)."""


class TokenVerifier:
    """Checks a bearer token and returns what it grants (one instance per app)."""

    def __init__(
        self, key: VerifyingKey, *, issuer: str | None = None, leeway: float = LEEWAY_S
    ) -> None:
        if not isinstance(key, (Ed25519PublicKey, SharedSecret)):
            raise ConfigError(
                "the server verifies tokens with an Ed25519 public key or a SharedSecret, "
                f"not {type(key).__name__}"
            )
        self._key = _raw(key)
        self._algorithms = [_algorithm(key)]  # exactly one: no confusion, never "none"
        self._issuer = issuer
        self._leeway = leeway
        required = ["exp", "iat", "aud", "sub", "jti"] + (["iss"] if issuer else [])
        self._options: Any = {"require": required}
        # token -> (exp, grant) of tokens already verified. A signature check costs more
        # than the rest of a request (~50-150 µs for Ed25519); a worker sends the same
        # token with every call until it expires, and a token cannot change, so its
        # signature need not be checked again -- its expiry still is, on every use.
        self._verified: dict[str, tuple[float, wire.Grant]] = {}

    def fingerprint(self) -> bytes:
        """A digest of the verifying key: the same on every replica that verifies the
        same tokens (the web UI keys its CSRF values with it)."""
        if isinstance(self._key, bytes):
            material = self._key
        else:
            material = self._key.public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
        return hashlib.sha256(b"statestore-verifier\x00" + material).digest()

    def verify(self, token: str) -> wire.Grant:
        """The grant of a valid token; :class:`AuthenticationError` for anything else."""
        known = self._verified.get(token)
        if known is not None:
            if time.time() < known[0] + self._leeway:
                return known[1]
            del self._verified[token]
            raise AuthenticationError("the token has expired")
        grant, expires = self._verify_signed(token)
        if len(self._verified) >= _VERIFIED_TOKENS:
            self._verified.clear()  # many live tokens: start over rather than grow
        self._verified[token] = (expires, grant)
        return grant

    def _verify_signed(self, token: str) -> tuple[wire.Grant, float]:
        try:
            claims = jwt.decode(
                token, self._key, algorithms=self._algorithms, audience=wire.TOKEN_AUDIENCE,
                issuer=self._issuer, leeway=self._leeway, options=self._options,
            )  # fmt: skip
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError(
                f"the token is not for this service (audience must be {wire.TOKEN_AUDIENCE!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("the token was issued by someone else") from None
        except jwt.InvalidAlgorithmError:
            raise AuthenticationError(
                f"the token's algorithm is not accepted here (only {self._algorithms[0]})"
            ) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthenticationError(f"the token has no {exc.claim!r} claim") from None
        except jwt.InvalidTokenError as exc:
            # The library's text names the check that failed, never the token itself.
            raise AuthenticationError(f"the token is not valid: {exc}") from None
        return wire.grant_from_claims(claims), float(claims["exp"])


def bearer_token(request: Request) -> str:
    """The token of ``Authorization: Bearer <token>``, or :class:`AuthenticationError`."""
    header = request.headers.get("authorization")
    if header is None:
        raise AuthenticationError("no token: send Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("the Authorization header must be Bearer <token>")
    return token.strip()


class Need(enum.Enum):
    """What a route does, and so what its token must grant."""

    TASK = "task"  # read or write one task instance's state (all map indices: clear)
    ASSET_READ = "asset_read"
    ASSET_WRITE = "asset_write"
    ADMIN = "admin"


@dataclass(frozen=True)
class Access:
    """A verified request: its grant, and the scope it names (``None`` for admin routes)."""

    grant: wire.Grant
    scope: StateScope | None

    @property
    def task_scope(self) -> TaskScope:
        assert isinstance(self.scope, TaskScope)  # the route's Need made it one
        return self.scope

    @property
    def asset_scope(self) -> AssetScope:
        assert isinstance(self.scope, AssetScope)
        return self.scope

    def writer(self, requested: str | None) -> str:
        """Who a write is recorded as: a task token's subject, whatever the request
        says (provenance a task could forge would be worthless); an admin may name the
        writer (the CLI names its user), else its own subject."""
        # The library's own rules (no NUL, at most 250 characters) whoever asks, as the
        # document says: past them the column fails later, untyped, on some dialects.
        name = writer_name(requested) if requested else None
        if self.grant.admin and name:
            return name
        return self.grant.subject


def _denied(scope: StateScope, what: str) -> AccessDeniedError:
    # Names only what the caller itself asked for: nothing of the other scope's state.
    return AccessDeniedError(f"the token does not grant {what} of {scope.describe()}")


def _check(grant: wire.Grant, need: Need, request: Request) -> StateScope | None:
    params = request.query_params
    if need is Need.ADMIN:
        if not grant.admin:
            raise AccessDeniedError("this route needs an admin token")
        return None
    scope = wire.scope_from_params(params, task=need is Need.TASK)
    if isinstance(scope, TaskScope):
        everything = request.method == "DELETE" and wire.flag(params, "all_map_indices")
        if not grant.may_touch_task(scope, all_map_indices=everything):
            raise _denied(scope, "task state of every map index" if everything else "task state")
    elif need is Need.ASSET_WRITE and not grant.may_write_asset(scope):
        raise _denied(scope, "writing the state")
    elif not grant.may_read_asset(scope):
        raise _denied(scope, "reading the state")
    return scope


def _writes(request: Request) -> bool:
    """Whether a request may change state: every PUT, DELETE and POST but a dry run."""
    if request.method in ("PUT", "DELETE"):
        return True
    if request.method != "POST" or request.url.path.endswith("/get-many"):
        return False  # get-many is a read that sends its keys in a body
    return not wire.flag(request.query_params, "dry_run")


def authorize(need: Need) -> Callable[[Request], Awaitable[Access]]:
    """The dependency of every state and admin route: the token is checked (401), then
    the scope the query names against what the token grants (403), before the route
    runs -- so no route can read or write anything its token does not cover. A
    read-only server refuses every write here too (``ReadOnlyServerError``, 403)."""

    async def dependency(request: Request) -> Access:
        verifier: TokenVerifier = request.app.state.statestore_verifier
        grant = verifier.verify(bearer_token(request))
        access = Access(grant, _check(grant, need, request))
        if request.app.state.statestore.read_only and _writes(request):
            raise ReadOnlyServerError(
                f"the server is read-only: {request.method} {request.url.path} is refused"
            )
        return access

    dependency.__name__ = f"authorize_{need.value}"
    return dependency
