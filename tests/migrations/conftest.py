"""Migration tests use the same per-test databases as the integration tests."""

from tests.integration.conftest import db_url, dialect, migrated_url, pytest_sessionfinish

__all__ = ["db_url", "dialect", "migrated_url", "pytest_sessionfinish"]
