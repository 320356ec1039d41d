"""The backend conformance suite: the behaviour every ``BaseStateBackend`` must have.

Shipped for authors of custom backends. It needs pytest and pytest-asyncio, which the
``testing`` extra installs::

    pip install "statestore[testing]"

Subclass the suites in your own test module (the class name must start with ``Test``)
and provide a ``backend`` fixture that returns or yields a fresh, **empty** backend.
Your fixture owns setup and teardown::

    import pytest
    from statestore.testing import AsyncBackendConformance, BackendConformance

    from mypackage import RedisStateBackend


    class TestRedisBackend(BackendConformance):
        @pytest.fixture
        def backend(self):
            backend = RedisStateBackend(url="redis://localhost/15")
            yield backend
            backend.drop_everything()  # whatever makes the next test start empty
            backend.close()


    class TestRedisBackendAsync(AsyncBackendConformance):
        @pytest.fixture  # or an async fixture (@pytest_asyncio.fixture in strict mode)
        def backend(self):
            ...

:class:`BackendConformance` calls ``get/set/delete/clear`` from plain test functions
and from threads; :class:`AsyncBackendConformance` awaits ``aget/aset/adelete/aclear``
(tests marked ``@pytest.mark.asyncio``, so any ``asyncio_mode`` works) and runs
concurrent asyncio tasks. Both pass JSON *text* and aware-UTC ``expires_at`` values,
exactly as the accessors do after validation, and check: missing keys, round trips,
last writer wins, delete (missing is a no-op), clear of one or every map index, asset
clear, isolation between every kind of scope, exact keys (case, whitespace, unicode
normalisation, 512 characters), byte-exact values, expiry honoured on read, asset
identity by name or uri, and concurrent writers. :class:`BackendConformance` also runs
the accessors' mapping protocol over your backend (``state[key]``, ``del state[key]``,
``key in state``, ``len``, iteration, the ``keys()``/``items()`` views; expired keys
absent), from :mod:`statestore.testing.mapping`.

The data comes from :class:`~statestore.testing.cases.ConformanceCases`; a subclass may
override its scope factories (``task_scope``, ``asset_scope``) or class attributes
(``exact_keys``, ``stored_values``, ``expired_ago``, ``concurrent_writers``, ...). A test
your backend deliberately does not pass can be overridden with a skipped one, saying why::

    @pytest.mark.skip(reason="single-threaded by design; see MyBackend docs")
    def test_concurrent_writers_from_threads(self, backend): ...

:func:`make_task_scope` and :func:`make_asset_scope` are small scope factories for your
own tests.
"""

import pytest

# Before the suites are imported: pytest then rewrites their asserts, so a failure in
# a user's run shows the values compared, not a bare AssertionError.
pytest.register_assert_rewrite(
    "statestore.testing.async_conformance",
    "statestore.testing.capabilities",
    "statestore.testing.conformance",
    "statestore.testing.mapping",
)

from statestore.testing.async_conformance import AsyncBackendConformance  # noqa: E402
from statestore.testing.cases import (  # noqa: E402
    EXACT_KEYS,
    STORED_VALUES,
    ConformanceCases,
    utc_now,
)
from statestore.testing.conformance import BackendConformance  # noqa: E402
from statestore.testing.scopes import make_asset_scope, make_task_scope  # noqa: E402

__all__ = [
    "EXACT_KEYS",
    "STORED_VALUES",
    "AsyncBackendConformance",
    "BackendConformance",
    "ConformanceCases",
    "make_asset_scope",
    "make_task_scope",
    "utc_now",
]
