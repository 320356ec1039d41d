"""A verified token is remembered, but never past its expiry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import time_machine

from statestore.exceptions import AuthenticationError
from statestore.server.auth import TokenVerifier, load_public_key, mint_token
from tests.server.conftest import Keys, task_grant


def test_a_remembered_token_still_expires(keys: Keys) -> None:
    verifier = TokenVerifier(load_public_key(keys.public_pem), leeway=0)
    start = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    grant = task_grant()
    with time_machine.travel(start, tick=False):
        token = mint_token(grant, keys.private_pem, ttl=timedelta(seconds=60), now=start)
        assert verifier.verify(token) == grant
        assert verifier.verify(token) == grant  # remembered: no second signature check
    with time_machine.travel(start + timedelta(seconds=61), tick=False):
        with pytest.raises(AuthenticationError, match="expired"):
            verifier.verify(token)
        with pytest.raises(AuthenticationError, match="expired"):
            verifier.verify(token)  # and forgotten: the signature path says so too


def test_a_tampered_copy_of_a_remembered_token_is_refused(keys: Keys) -> None:
    verifier = TokenVerifier(load_public_key(keys.public_pem))
    token = mint_token(task_grant(), keys.private_pem)
    assert verifier.verify(token) == task_grant()
    head, payload, signature = token.split(".")
    forged = ".".join((head, payload, signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")))
    with pytest.raises(AuthenticationError):
        verifier.verify(forged)
