"""A contract test kit for backends (like distributed's reusable cluster tests).

* :class:`~airflow_provider_runners.testing.memory.InMemoryBackend` — a backend whose "cloud"
  is a dict (:class:`~airflow_provider_runners.testing.memory.InMemoryCloud`): for tests of the
  operators, triggers and governance that need a backend but not a real one.
* :class:`~airflow_provider_runners.testing.contract.BackendContract` — a test mixin: a backend's
  test class subclasses it, provides a ``backend`` fixture, and inherits the contract tests
  (create, find, adopt, teardown twice, status of a missing runner, labels, expiry, evidence).
* :func:`~airflow_provider_runners.testing.contract.use_backend` — make ``get_backend(conn_id)``
  return a given backend instance for one test (no class-level doubles).

Only tests import this package (it needs pytest). docs/architecture.md, "Adding a backend".
"""
