"""Orchestrator integrations: Airflow, Dagster, Prefect.

Each lives in its own module and imports its orchestrator at import time, so
``import statestore`` never pulls one in: install the matching extra
(``statestore[airflow]``, ``[dagster]``, ``[prefect]``) and import
``statestore.integrations.<name>`` explicitly.
"""
