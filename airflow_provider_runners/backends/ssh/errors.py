"""What the errors of the ``ssh`` backend mean (its :class:`~airflow_provider_runners.core.errors.ErrorMap`).

The backend runs the worker's ``ssh`` binary: exit status 255 (or no answer in time) means ssh
could not reach the host — :class:`SshUnreachable`, TRANSIENT; any other failure of a script
on the host is a ``ProvisionError``, PERMANENT by default.
"""

from __future__ import annotations

from airflow_provider_runners.core.errors import ErrorKind, ErrorMap
from airflow_provider_runners.exceptions import ProvisionError


class SshUnreachable(ProvisionError):
    """ssh could not connect to the host (exit status 255, or no answer in time)."""


class SshErrorMap(ErrorMap):
    """:class:`SshUnreachable` TRANSIENT; the rest as the default map."""

    def recognise(self, exc: BaseException) -> ErrorKind | None:
        return ErrorKind.TRANSIENT if isinstance(exc, SshUnreachable) else None


SSH_ERRORS = SshErrorMap()
