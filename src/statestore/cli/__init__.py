"""The ``statestore`` command line (also ``python -m statestore``)."""

from statestore.cli.app import app, main

__all__ = ["app", "main"]
