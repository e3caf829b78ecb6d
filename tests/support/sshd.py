"""A real OpenSSH server for the ``ssh`` backend's tests: ``/usr/sbin/sshd`` in the foreground on
a free 127.0.0.1 port, with its own host key, one client key in its authorized_keys, logging in
as the user running the tests (a non-root sshd can only log in as itself).

Install it with ``apt-get install openssh-server`` (``scripts/ensure-sshd.sh``); the package's
service need not run. Everything lives in the given directory; stopping the process cleans up.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class SshServer:
    host: str
    port: int
    login: str
    private_key: str
    known_hosts: str
    proc: subprocess.Popen[bytes]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def sshd_available() -> bool:
    """True when sshd and ssh are installed — or when they must be (RUNNERS_E2E_REQUIRED, as in
    CI): then the tests run and a missing server is a failure, not a skip."""
    if os.environ.get("RUNNERS_E2E_REQUIRED"):
        return True
    return os.access(SSHD, os.X_OK) and shutil.which("ssh") is not None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "runners-test", "-f", str(path)], check=True
    )


def start_sshd(workdir: Path, names: tuple[str, ...] = ("127.0.0.1",)) -> SshServer:
    """Start sshd; ``known_hosts`` lists its host key under each of ``names`` (with the port)."""
    workdir.mkdir(parents=True, exist_ok=True)
    _keygen(workdir / "host_key")
    _keygen(workdir / "client_key")
    (workdir / "authorized_keys").write_text((workdir / "client_key.pub").read_text())
    port = _free_port()
    config = workdir / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {workdir / 'host_key'}",
                f"PidFile {workdir / 'sshd.pid'}",
                f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
                "StrictModes no",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                "MaxStartups 100",
                "MaxSessions 100",
                "LogLevel ERROR",
                "",
            ]
        )
    )
    if os.geteuid() == 0:  # privilege separation needs it; the service would create it
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    with open(workdir / "sshd.log", "wb") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=log)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {(workdir / 'sshd.log').read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    host_key = (workdir / "host_key.pub").read_text().split()
    known_hosts = "".join(f"[{name}]:{port} {host_key[0]} {host_key[1]}\n" for name in names)
    return SshServer(
        host="127.0.0.1",
        port=port,
        login=getpass.getuser(),
        private_key=(workdir / "client_key").read_text(),
        known_hosts=known_hosts,
        proc=proc,
    )
