"""Defaults read from the Airflow configuration when an operator or sensor is built.

``deferrable``: the official providers default it to ``[operators] default_deferrable``. Airflow's
own default for that option is ``False``, and Airflow writes ``default_deferrable = false`` into the
``airflow.cfg`` it generates on first start — so a ``false`` there cannot be told from "nobody
chose". Reading it as-is would move every provision and sensor wait out of the triggerer into a
worker slot on a stock install. So: ``true`` (from ``airflow.cfg`` or the environment) turns
deferral on; ``false`` counts only when set explicitly in the environment
(``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=False``); otherwise the operator's fallback applies
(``True`` for provision, ``runner(...)``, ``@task.runner`` and the sensors). ``deferrable=False``
on an operator always wins.
"""

from __future__ import annotations

import os


def default_deferrable(fallback: bool = True) -> bool:
    """``[operators] default_deferrable`` as the module docstring says, else ``fallback``."""
    from airflow.configuration import conf

    env = os.environ.get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE")
    if env is not None:
        return conf.getboolean("operators", "default_deferrable", fallback=fallback)
    try:
        configured = conf.getboolean("operators", "default_deferrable", fallback=False)
    except Exception:  # noqa: BLE001 - an unreadable value: the fallback
        return fallback
    return True if configured else fallback
