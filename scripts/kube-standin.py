"""A Kubernetes API stand-in for docker-compose.yaml's ``kubernetes`` profile (no cluster needed).

It serves the test suite's emulator (tests/fakes/kubernetes.py: kmock's Kubernetes emulator
taught the real API's statuses, selectors, graceful deletion, logs and exec) on
``0.0.0.0:<port>``, with its kubelet stand-in, which runs each pod's command as a local process
in this container. ``dags/eks_sil_suite.py`` reaches it through the ``runners_kubernetes``
Connection the compose file defines (docs/kubernetes.md). Stop it with Ctrl-C / SIGTERM: the
kubelet stops every pod process and removes its workspace.

    python scripts/kube-standin.py --port 8001
"""

from __future__ import annotations

import argparse
import functools
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repo root (tests.fakes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()

    import kmock

    from tests.fakes import kubernetes as fake

    # KubeCluster serves on 127.0.0.1 and a free port; a container serves every interface.
    fake.kmock.Server = functools.partial(kmock.Server, host=args.host, port=args.port)  # type: ignore[misc]
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with fake.KubeCluster() as cluster:
        print(f"Kubernetes API stand-in on {cluster.url}", flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
