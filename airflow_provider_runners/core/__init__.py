"""The core domain: the backend contract, specs, catalog, handles, lineage, lifecycle, prices.

Imports only :mod:`airflow_provider_runners.exceptions` and itself (docs/architecture.md).
"""
