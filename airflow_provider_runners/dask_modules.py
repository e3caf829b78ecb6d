"""Make functions defined in a DAG file runnable on a Dask cluster.

Airflow imports a DAG file under a generated module name (``unusual_prefix_<hash>_<file>``).
Dask pickles functions *by reference* to their module, and recent ``distributed`` versions
unpickle task graphs on the scheduler too, so a function from a DAG file fails there with
``No module named 'unusual_prefix_...'``.

:func:`ship_modules` pickles each function and class the DAG file defines *by value*
(cloudpickle) and installs, on the scheduler and on every worker (present and future, through
Dask plugins), a stand-in module of that name that unpickles a member only when something
asks for it. So a job's helper (``_partition``) resolves on the cluster, while the DAG-building
code that needs Airflow is never loaded there. Modules kept next to the DAG files (job code in
``dags/sales_etl.py``, imported by several DAGs) are shipped the same way. Imported only when a
job runs, never at parse time.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import sys
import types
from collections.abc import Callable
from typing import Any

import cloudpickle
from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

DAG_MODULE_PREFIX = "unusual_prefix_"


class LazyModule(types.ModuleType):
    """A module whose members are unpickled from ``payloads`` on first access."""

    def __init__(self, name: str, payloads: dict[str, bytes]) -> None:
        super().__init__(name)
        self._payloads = payloads

    def __getattr__(self, attr: str) -> Any:
        payloads = self.__dict__.get("_payloads", {})
        if attr not in payloads:
            raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r}")
        value = cloudpickle.loads(payloads[attr])
        setattr(self, attr, value)
        return value


def install_module(name: str, payloads: dict[str, bytes]) -> None:
    """Register (or refresh) the stand-in module ``name`` in this process."""
    existing = sys.modules.get(name)
    if isinstance(existing, LazyModule):
        for attr in list(existing.__dict__):
            if attr in existing._payloads:
                delattr(existing, attr)
        existing._payloads = payloads
    elif existing is None:
        sys.modules[name] = LazyModule(name, payloads)


class _ModuleOnScheduler(SchedulerPlugin):
    def __init__(self, name: str, payloads: dict[str, bytes]) -> None:
        self.module_name, self.payloads = name, payloads

    async def start(self, scheduler: Any) -> None:
        install_module(self.module_name, self.payloads)


class _ModuleOnWorkers(WorkerPlugin):
    def __init__(self, name: str, payloads: dict[str, bytes]) -> None:
        self.module_name, self.payloads = name, payloads

    def setup(self, worker: Any) -> None:
        install_module(self.module_name, self.payloads)


def module_payloads(module: types.ModuleType) -> dict[str, bytes]:
    """Every function and class defined in ``module``, pickled by value (skipping unpicklable ones)."""
    payloads: dict[str, bytes] = {}
    cloudpickle.register_pickle_by_value(module)
    try:
        for name, obj in list(vars(module).items()):
            if (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__:
                try:
                    payloads[name] = cloudpickle.dumps(obj)
                except Exception:  # noqa: BLE001, S112 - unpicklable members are not shipped
                    continue
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    return payloads


def modules_to_ship(func: Callable[..., Any], dag_folder: str | None = None) -> list[types.ModuleType]:
    """The modules a job's code may need on the cluster and the cluster cannot import: the DAG
    file that defines ``func`` (generated name), and every loaded module whose file lives under
    ``dag_folder`` (job code kept next to the DAGs, e.g. ``dags/sales_etl.py``)."""
    found: dict[str, types.ModuleType] = {}
    module = sys.modules.get(getattr(func, "__module__", "") or "")
    if module is not None and module.__name__.startswith(DAG_MODULE_PREFIX):
        found[module.__name__] = module
    if dag_folder:
        root = os.path.realpath(dag_folder) + os.sep
        real_dirs: dict[str, str] = {}  # a few hundred directories hold thousands of modules
        for name, candidate in list(sys.modules.items()):
            filename = getattr(candidate, "__file__", None)
            if not filename or isinstance(candidate, LazyModule):
                continue
            folder, base = os.path.split(filename)
            if folder not in real_dirs:
                real_dirs[folder] = os.path.realpath(folder)
            if os.path.join(real_dirs[folder], base).startswith(root):
                found.setdefault(name, candidate)
    return list(found.values())


def ship_modules(client: Any, func: Callable[..., Any], dag_folder: str | None = None) -> list[str]:
    """Install :func:`modules_to_ship` on the client's cluster (scheduler and workers); return their names.

    Only functions and classes are shipped, by value with what they reference: keep large data
    out of module-level globals that job functions use, or it travels with every job.
    """
    names = []
    for module in modules_to_ship(func, dag_folder):
        payloads = module_payloads(module)
        digest = hashlib.sha256(b"".join(payloads[k] for k in sorted(payloads))).hexdigest()[:12]
        plugin_name = f"airflow-runners-module-{module.__name__}-{digest}"
        client.register_plugin(_ModuleOnScheduler(module.__name__, payloads), name=plugin_name + "-s")
        client.register_plugin(_ModuleOnWorkers(module.__name__, payloads), name=plugin_name + "-w")
        names.append(module.__name__)
    return sorted(names)
