"""The ``runners_ssh`` Connection, parsed strictly, and the OpenSSH client calls made with it.

The backend uses the worker's ``ssh`` binary (OpenSSH client: in the official Airflow image and
on every Linux worker), so it needs no Python package. Key material from the Connection is
written to a private temporary directory (mode 0700) for the duration of one call and removed
after it; secrets never appear on a command line (scripts and their environment go on stdin).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from airflow_provider_runners.exceptions import ConnectionConfigError

if TYPE_CHECKING:
    from airflow_provider_runners.core.backend import ConnectionConfig

#: Exit status of the ssh client when the connection itself failed (not the remote command).
SSH_CONNECT_FAILED = 255
#: The only worker variables the ssh client process gets (never Airflow's configuration).
_CLIENT_ENV = ("HOME", "USER", "LOGNAME", "PATH", "SSH_AUTH_SOCK", "LANG", "TMPDIR")


class HostEntry(BaseModel):
    """One host of the pool; ``workspace_root`` overrides the Connection's for this host."""

    model_config = ConfigDict(extra="forbid")
    host: str = Field(min_length=1)
    port: PositiveInt | None = None
    workspace_root: str | None = None


class SshExtra(BaseModel):
    """The Connection's ``extra`` (unknown keys refused)."""

    model_config = ConfigDict(extra="forbid")
    #: More hosts, after those in the Connection's ``host`` field (comma-separated there).
    hosts: list[str | HostEntry] = Field(default_factory=list)
    #: The private key's text (OpenSSH format, no passphrase); a secret.
    private_key: str | None = None
    #: Or a path on the worker to a private key file.
    key_file: str | None = None
    #: known_hosts lines for the pool; without it the worker user's ~/.ssh/known_hosts is used.
    known_hosts: str | None = None
    #: False accepts any host key (StrictHostKeyChecking=no): only for throwaway test hosts.
    host_key_checking: bool = True
    #: Where runners' workspaces and the lease live on each host; relative = under the login's home.
    workspace_root: str = "airflow-runners"
    #: Variables every command on the host gets.
    host_env: dict[str, str] = Field(default_factory=dict)
    connect_timeout: PositiveInt = 10


@dataclass(frozen=True)
class Host:
    """A host of the pool as the backend addresses it."""

    host: str
    port: int
    workspace_root: str

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class SshSettings:
    conn_id: str
    login: str | None
    hosts: tuple[Host, ...]
    extra: SshExtra

    def host(self, address: str) -> Host:
        for host in self.hosts:
            if host.address == address:
                return host
        raise ConnectionConfigError(
            f"Connection {self.conn_id!r}: host {address!r} is not in its pool; "
            f"allowed: {[h.address for h in self.hosts]}"
        )


def parse_connection(config: ConnectionConfig) -> SshSettings:
    """The Connection's hosts and extra, or a ConnectionConfigError naming field, value and what is allowed."""
    try:
        extra = SshExtra.model_validate(config.extra)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"])
        allowed = sorted(SshExtra.model_fields)
        raise ConnectionConfigError(
            f"Connection {config.conn_id!r}: extra.{field}: {first['msg']}; allowed extra fields: {allowed}"
        ) from None
    if extra.private_key and extra.key_file:
        raise ConnectionConfigError(
            f"Connection {config.conn_id!r}: extra sets both private_key and key_file; allowed: one of them"
        )
    default_port = config.port or 22
    entries: list[str | HostEntry] = [h.strip() for h in (config.host or "").split(",") if h.strip()]
    entries += extra.hosts
    hosts: list[Host] = []
    for entry in entries:
        if isinstance(entry, str):
            name, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            if port and not port.isdigit():
                raise ConnectionConfigError(
                    f"Connection {config.conn_id!r}: host {entry!r} has port {port!r}; allowed: host or host:port"
                )
            entry = HostEntry(host=name, port=int(port) if port else None)
        hosts.append(
            Host(entry.host, entry.port or default_port, entry.workspace_root or extra.workspace_root)
        )
    if not hosts:
        raise ConnectionConfigError(
            f"Connection {config.conn_id!r}: host is {config.host!r} and extra.hosts is empty; "
            "allowed: one host or a comma-separated list (host or host:port)"
        )
    addresses = [h.address for h in hosts]
    if len(set(addresses)) != len(addresses):
        raise ConnectionConfigError(f"Connection {config.conn_id!r}: a host is listed twice: {addresses}")
    return SshSettings(config.conn_id, config.login, tuple(hosts), extra)


class SshClient:
    """Runs scripts on the pool's hosts with the worker's OpenSSH client."""

    def __init__(self, settings: SshSettings) -> None:
        self.settings = settings
        if shutil.which("ssh") is None:
            raise ConnectionConfigError(
                f"Connection {settings.conn_id!r}: the ssh backend needs the OpenSSH client (`ssh`) "
                "on the worker's PATH; install openssh-client"
            )

    @contextmanager
    def argv(self, host: Host, script: str) -> Iterator[list[str]]:
        """The ssh command line that runs ``script`` (POSIX sh) on ``host``; key files live while open."""
        extra = self.settings.extra
        workdir = tempfile.mkdtemp(prefix="runners-ssh-")  # mode 0700
        try:
            options = [
                "-p", str(host.port),
                "-o", "BatchMode=yes",
                "-o", f"ConnectTimeout={extra.connect_timeout}",
                "-o", "ServerAliveInterval=15",
                "-o", "ServerAliveCountMax=4",
                "-o", "LogLevel=ERROR",
            ]  # fmt: skip
            if extra.private_key:
                key = os.path.join(workdir, "key")
                with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "w", encoding="utf-8") as fh:
                    fh.write(extra.private_key.strip() + "\n")
                options += ["-i", key, "-o", "IdentitiesOnly=yes"]
            elif extra.key_file:
                options += ["-i", extra.key_file, "-o", "IdentitiesOnly=yes"]
            if not extra.host_key_checking:
                options += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
            elif extra.known_hosts:
                known = os.path.join(workdir, "known_hosts")
                with open(known, "w", encoding="utf-8") as fh:
                    fh.write(extra.known_hosts.strip() + "\n")
                options += ["-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={known}"]
            else:
                options += ["-o", "StrictHostKeyChecking=yes"]
            target = f"{self.settings.login}@{host.host}" if self.settings.login else host.host
            yield ["ssh", *options, target, "--", "sh -c " + shlex.quote(script)]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    @staticmethod
    def client_env() -> dict[str, str]:
        return {name: os.environ[name] for name in _CLIENT_ENV if name in os.environ}

    def run(
        self, host: Host, script: str, stdin: str = "", timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run ``script`` on ``host`` and wait; exit status 255 means ssh could not connect."""
        with self.argv(host, script) as argv:
            try:
                return subprocess.run(
                    argv,
                    input=stdin,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=timeout,
                    env=self.client_env(),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                return subprocess.CompletedProcess(
                    argv, SSH_CONNECT_FAILED, "", f"no answer within {timeout} s"
                )


def q(value: str) -> str:
    """Quote ``value`` for the remote sh; a relative path stays relative (to the login's home)."""
    return shlex.quote(value)
