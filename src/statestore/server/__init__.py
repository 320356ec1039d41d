"""The state server (extra ``server``): workers use state with a URL and a token.

``create_app(...)`` builds the ASGI app; ``statestore serve`` runs it under uvicorn.
``mint_token(grant, private_key)`` makes the token a worker presents (``statestore token
mint`` from the command line). See :mod:`statestore.wire` for the HTTP contract.
"""

from __future__ import annotations

from statestore.server.app import create_app
from statestore.server.auth import (
    SharedSecret,
    generate_keypair,
    load_private_key,
    load_public_key,
    mint_token,
)
from statestore.wire import Grant

__all__ = [
    "Grant",
    "SharedSecret",
    "create_app",
    "generate_keypair",
    "load_private_key",
    "load_public_key",
    "mint_token",
]
