"""The ``bench_http`` backend. Benches on an HTTP platform (docs/bench_http.openapi.yaml, docs/benches.md)."""

from __future__ import annotations

from airflow_provider_runners.backends.bench_http.backend import BenchHttpBackend

__all__ = ["BenchHttpBackend"]
