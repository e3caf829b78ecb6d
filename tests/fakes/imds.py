"""A stand-in for the EC2 instance metadata service (IMDSv2 with instance tags) and a way to run
one round of the host's idle watcher (airflow_provider_runners/backends/ec2/idle.py) in bash."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from pathlib import Path
from typing import Any


class FakeImds:
    """IMDSv2 with instance tags: PUT /latest/api/token, GET /latest/meta-data/tags/instance/<key>."""

    def __init__(self) -> None:
        self.tags: dict[str, str] = {}
        imds = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                self._answer(200, "token-1")

            def do_GET(self) -> None:
                key = self.path.removeprefix("/latest/meta-data/tags/instance/")
                ok = self.headers.get("X-aws-ec2-metadata-token") == "token-1" and key in imds.tags
                self._answer(200 if ok else 404, imds.tags.get(key, "") if ok else "")

            def _answer(self, code: int, body: str) -> None:
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def watch_once(imds: FakeImds, idle_dir: Path, bin_dir: Path, now: float | None = None) -> list[str]:
    """One round of the watcher (``RUNNER_IDLE_ONCE``) at ``now`` (default: the real clock), with
    ``bin_dir`` first on PATH (its ``shutdown`` appends its arguments to ``bin_dir/shutdown.log``);
    returns the shutdown calls so far."""
    from airflow_provider_runners.backends.ec2.idle import IDLE_WATCHER

    script = bin_dir / "runner-idle-watch"
    script.write_text(IDLE_WATCHER)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "RUNNER_IDLE_DIR": str(idle_dir),
        "RUNNER_IMDS": imds.url,
        "RUNNER_IDLE_ONCE": "1",
    }
    if now is not None:
        env["RUNNER_IDLE_NOW"] = str(int(now))
    subprocess.run(["bash", str(script)], env=env, check=True, timeout=30, capture_output=True)
    log = bin_dir / "shutdown.log"
    return log.read_text().splitlines() if log.exists() else []
