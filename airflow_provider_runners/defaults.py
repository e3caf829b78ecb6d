"""Defaults read from the Airflow configuration when an operator or sensor is built.

``deferrable``: the official providers default it to ``[operators] default_deferrable``. Airflow's
own default for that option is ``False``, and reading it as-is would move every provision wait
(and every sensor wait) out of the triggerer into a worker slot on a stock install — a change of
behaviour nobody asked for. So an *explicit* setting counts (``airflow.cfg`` or
``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE``); when the deployment says nothing, the fallback of
the operator applies (``True`` for provision, ``runner(...)``, ``@task.runner`` and the sensors).
"""

from __future__ import annotations

import configparser
import os


def default_deferrable(fallback: bool = True) -> bool:
    """``[operators] default_deferrable`` when the deployment sets it, else ``fallback``."""
    from airflow.configuration import conf

    explicit = os.environ.get("AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE") is not None
    if not explicit:
        try:  # values read from airflow.cfg, without Airflow's built-in defaults
            explicit = configparser.ConfigParser.has_option(conf, "operators", "default_deferrable")
        except Exception:  # noqa: BLE001 - an unusual config object: use the fallback
            explicit = False
    if not explicit:
        return fallback
    return conf.getboolean("operators", "default_deferrable", fallback=fallback)
