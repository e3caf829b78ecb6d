"""Facts about where code runs: host identity and runtime versions (for evidence)."""

from __future__ import annotations

import hashlib
import os
import platform
import socket
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any


@lru_cache(maxsize=1)
def host_identity() -> dict[str, Any]:
    """Hostname, FQDN, a hash of /etc/machine-id (stable, not the raw id) and the platform."""
    try:
        with open("/etc/machine-id") as fh:
            machine_id = hashlib.sha256(fh.read().strip().encode()).hexdigest()[:16]
    except OSError:
        machine_id = None
    return {
        "hostname": socket.gethostname(),
        "fqdn": socket.getfqdn(),
        "machine_id_sha256_16": machine_id,
        "os": platform.system(),
        "kernel": platform.release(),
        "arch": platform.machine(),
    }


def runtime_versions(packages: tuple[str, ...]) -> dict[str, Any]:
    """Python version, the named packages' versions and a digest of the whole environment."""
    found: dict[str, str | None] = {}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return {"python": sys.version.split()[0], "packages": found, "environment_digest": environment_digest()}


@lru_cache(maxsize=1)
def environment_digest() -> str:
    """sha256 over the installed distributions (their ``*.dist-info`` names carry name and version).

    The local stand-in for an image digest: two hosts with the same digest run the same packages.
    Reads directory names only: about a millisecond, rather than parsing every METADATA file.
    """
    pins: set[str] = set()
    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        pins.update(n[: -len(".dist-info")].lower() for n in names if n.endswith(".dist-info"))
    return "sha256:" + hashlib.sha256("\n".join(sorted(pins)).encode()).hexdigest()
