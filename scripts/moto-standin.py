"""An AWS stand-in for docker-compose.yaml's ``moto`` service: moto's server with an SSM agent stand-in.

It serves the test suite's moto server (tests/fakes/aws.py: ``MotoServer``, moto's own server
app) on ``0.0.0.0:<port>`` with ``HostAgent`` installed, so the ``ec2`` backend's hosts work
without an account: an instance that is ``running`` reports its SSM agent ``Online``, and an
``AWS-RunShellScript`` command runs in a local ``bash`` in this container (its ``aws`` CLI is a
stand-in answering from this moto server; ``shutdown`` only records its arguments). Every
"host" is this container: what a command writes to a shared volume is seen by the workers.

One addition to moto, for scripts/compose-aws-init.py: a ``_custom_id_`` tag in the
TagSpecifications of CreateSubnet, CreateSecurityGroup or RegisterImage sets the new
resource's id (moto's own convention for custom ids, which its EC2 does not honour), so the
subnet, security groups and AMIs get the ids the ``runners_ec2`` Connection and the catalog name.

moto keeps everything in memory: stopping it (Ctrl-C / SIGTERM) forgets every resource, and
ends the command processes still running. Nothing is created outside this process and
``--workdir`` (the agent's fake ``aws``/``shutdown`` and home; a temporary directory by default,
removed on exit).

    python scripts/moto-standin.py --port 5000
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root (tests.fakes)

CUSTOM_ID_TAG = "_custom_id_"
#: EC2 action -> (module of moto.ec2.models, its id generator, the id's prefix)
CUSTOM_ID_ACTIONS = {
    "CreateSubnet": ("subnets", "random_subnet_id", "subnet-"),
    "CreateSecurityGroup": ("security_groups", "random_security_group_id", "sg-"),
    "RegisterImage": ("amis", "random_ami_id", "ami-"),
}
_TAG_KEY = re.compile(r"^TagSpecification\.(\d+)\.Tag\.(\d+)\.Key$")
_pending = threading.local()  # the id asked for by the request this thread is serving


def custom_id(body: bytes) -> tuple[str, str] | None:
    """``(action, id)`` when an EC2 create request asks for an id with the ``_custom_id_`` tag."""
    params = dict(parse_qsl(body.decode(errors="replace")))
    action = params.get("Action", "")
    if action not in CUSTOM_ID_ACTIONS:
        return None
    for key, value in params.items():
        match = _TAG_KEY.match(key)
        if match and value == CUSTOM_ID_TAG:
            wanted = params.get(f"TagSpecification.{match.group(1)}.Tag.{match.group(2)}.Value", "")
            prefix = CUSTOM_ID_ACTIONS[action][2]
            if not wanted.startswith(prefix):
                raise ValueError(
                    f"{CUSTOM_ID_TAG}: {wanted!r} is not an id for {action}; it starts with {prefix!r}"
                )
            return action, wanted
    return None


def install_custom_ids() -> None:
    """Make moto's EC2 id generators return the id of the current request's ``_custom_id_`` tag."""
    import importlib

    for module_name, func, prefix in CUSTOM_ID_ACTIONS.values():
        module = importlib.import_module(f"moto.ec2.models.{module_name}")
        original = getattr(module, func)

        def generate(original: Any = original, prefix: str = prefix) -> str:
            wanted = getattr(_pending, "id", None)
            if wanted and wanted.startswith(prefix):  # a request may make other resources first
                _pending.id = None
                return str(wanted)
            return str(original())

        setattr(module, func, generate)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--workdir", default=None, help="the agent's home (default: a temporary directory)")
    args = parser.parse_args()

    from tests.fakes.aws import HostAgent, MotoServer

    class StandinServer(MotoServer):
        def _middleware(self, app: Any) -> Any:
            inner = super()._middleware(app)

            def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                if not length or environ.get("PATH_INFO", "").startswith("/moto-api"):
                    return inner(environ, start_response)
                body = environ["wsgi.input"].read(length)
                environ["wsgi.input"] = io.BytesIO(body)
                try:
                    asked = custom_id(body)
                except ValueError as exc:
                    start_response("400 Bad Request", [("Content-Type", "text/plain")])
                    return [str(exc).encode()]
                _pending.id = asked[1] if asked else None
                try:
                    return list(inner(environ, start_response))
                finally:
                    _pending.id = None

            return wrapped

    install_custom_ids()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with tempfile.TemporaryDirectory(prefix="moto-standin-") as tmp:
        workdir = Path(args.workdir or tmp)
        server = StandinServer(args.host, args.port).start()
        # The "host" runs this image's python3: let it import what this process can (fsspec...).
        path = os.pathsep.join(p for p in sys.path if p.endswith(("site-packages", "dist-packages")))
        agent = HostAgent(server, workdir, env={"PYTHONPATH": path}).install()
        print(f"moto stand-in (SSM agent: local bash) on {server.url}", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
        finally:
            agent.uninstall()
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
