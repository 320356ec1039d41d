"""The backend conformance suite: the behaviour every ``BaseStateBackend`` must have.

Ship-ready for custom-backend authors (``pip install "statestore[testing]"`` brings
pytest and pytest-asyncio). Subclass the suites in your own test module and provide a
``backend`` fixture that yields a fresh, empty backend::

    import pytest
    from statestore.testing import AsyncBackendConformance, BackendConformance

    from mypackage import RedisStateBackend


    class TestRedisBackend(BackendConformance):
        @pytest.fixture
        def backend(self):
            backend = RedisStateBackend(...)
            yield backend
            backend.close()


    class TestRedisBackendAsync(AsyncBackendConformance):
        @pytest.fixture
        def backend(self):  # may also be an async fixture
            ...

The suites call the backend directly with JSON text, as the accessors do after
validation; the in-memory and metastore backends run them in statestore's own tests.
"""

from statestore.testing.conformance import AsyncBackendConformance, BackendConformance
from statestore.testing.scopes import make_asset_scope, make_task_scope

__all__ = [
    "AsyncBackendConformance",
    "BackendConformance",
    "make_asset_scope",
    "make_task_scope",
]
