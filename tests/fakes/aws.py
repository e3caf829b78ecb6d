"""moto in server mode for the ``ec2`` backend, with a request log and the smallest SSM stand-in.

:class:`MotoServer` is moto's own server app (``ThreadedMotoServer``'s) on 127.0.0.1 and a free
random port, wrapped in a WSGI middleware that records every request that *reaches the server*
(service, action, time), serialises DynamoDB requests (moto evaluates a condition and writes
without a lock; DynamoDB's conditional writes are atomic per item), and can answer the first N calls of an action with EC2's
``RequestLimitExceeded`` throttling error, as a real over-budget account would. Clients are real
boto3 over HTTP.

moto 5.2's EC2 runs no SSM agent, so three SSM behaviours are missing there (checked against
moto 5.2.5: ``DescribeInstanceInformation`` and ``CancelCommand`` are not implemented, and
``SendCommand`` records a command whose invocation is ``Success`` at once with empty output).
:class:`HostAgent` is the stand-in, installed inside moto's SSM response/backend classes (the
lowest layer; boto3 and the HTTP path stay real):

* ``DescribeInstanceInformation``: an instance's agent is ``Online`` once the instance has been
  ``running`` in moto's EC2 backend for ``online_after_s`` (real agents register after boot);
  instances in ``never_online`` never register.
* ``SendCommand``: the ``AWS-RunShellScript`` script is run by ``bash`` in a local subprocess (the
  "host"), its output appended to the invocation as it comes, ``ResponseCode`` = exit code,
  ``Status`` InProgress → Success / Failed / TimedOut (``executionTimeout``) / Cancelled.
  ``PATH`` starts with a fake bin dir: ``aws`` (secretsmanager get-secret-value, ssm get-parameter,
  sqs receive-message / delete-message, s3 cp — answered from this moto server with the "instance profile" credentials) and
  ``shutdown`` (records its arguments; never shuts anything down).
* ``CancelCommand``: kills the script's process group; the invocation ends ``Cancelled``.
"""

from __future__ import annotations

import collections
import io
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
_THROTTLE_XML = (
    '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>RequestLimitExceeded</Code>'
    "<Message>Request limit exceeded.</Message></Error></Errors><RequestID>throttled</RequestID></Response>"
)
_CRED_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/")


class MotoServer:
    """moto's server app on 127.0.0.1:<free port> (or ``host``/``port``), with a log of the requests
    it received. scripts/moto-standin.py serves it on 0.0.0.0 for docker-compose.yaml."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host, self.port = host, port
        self.calls: list[tuple[float, str, str]] = []
        self.throttle: dict[str, int] = {}  # action -> how many more calls to throttle
        self.throttled: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._dynamodb_lock = threading.Lock()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> MotoServer:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        app = DomainDispatcherApplication(create_backend_app)
        self._server = make_server(
            self.host, self.port, self._middleware(app), threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="moto")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"  # every interface: this one too

    def reset(self) -> None:
        """Forget moto's state (all services) and the request log."""
        import requests

        requests.post(f"{self.url}/moto-api/reset", timeout=10)
        with self._lock:
            self.calls.clear()
            self.throttled.clear()
            self.throttle.clear()

    def counts(self, since: float = 0.0) -> collections.Counter[str]:
        """``service:Action`` -> requests received since ``since`` (time.monotonic())."""
        with self._lock:
            return collections.Counter(f"{svc}:{act}" for t, svc, act in self.calls if t >= since)

    def _middleware(self, app: Any) -> Any:
        def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
            if environ.get("PATH_INFO", "").startswith("/moto-api"):
                return app(environ, start_response)
            length = int(environ.get("CONTENT_LENGTH") or 0)
            body = environ["wsgi.input"].read(length) if length else b""
            environ["wsgi.input"] = io.BytesIO(body)
            target = environ.get("HTTP_X_AMZ_TARGET", "")
            scope = _CRED_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
            service = scope.group(1) if scope else "?"
            if target:
                action = target.rsplit(".", 1)[-1]
            else:
                match = re.search(rb"(?:^|&)Action=([A-Za-z0-9]+)", body)
                action = match.group(1).decode() if match else environ.get("REQUEST_METHOD", "?")
            with self._lock:
                self.calls.append((time.monotonic(), service, action))
                left = self.throttle.get(action, 0)
                if left > 0:
                    self.throttle[action] = left - 1
                    self.throttled[action] += 1
            if left > 0:
                start_response("503 Service Unavailable", [("Content-Type", "text/xml")])
                return [_THROTTLE_XML.encode()]
            if service == "dynamodb":
                # moto checks a ConditionExpression and applies the write without a lock, so two
                # concurrent requests can both pass it; DynamoDB serialises writes to an item.
                with self._dynamodb_lock:
                    return list(app(environ, start_response))
            return app(environ, start_response)

        return wrapped


def _fake_bin(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    aws = directory / "aws"
    aws.write_text(
        f"#!{sys.executable}\n"
        + r'''
"""Stand-in for the host's AWS CLI (instance-profile credentials) talking to the moto server."""
import os, sys, boto3
args = sys.argv[1:]
def opt(name):
    return args[args.index(name) + 1] if name in args else None
kw = dict(endpoint_url=os.environ["RUNNERS_FAKE_AWS_ENDPOINT"], region_name=opt("--region") or "us-east-1",
          aws_access_key_id="instance-profile", aws_secret_access_key="instance-profile")
service, command = args[0], args[1]
try:
    if (service, command) == ("secretsmanager", "get-secret-value"):
        print(boto3.client("secretsmanager", **kw).get_secret_value(SecretId=opt("--secret-id"))["SecretString"])
    elif (service, command) == ("ssm", "get-parameter"):
        p = boto3.client("ssm", **kw).get_parameter(Name=opt("--name"), WithDecryption="--with-decryption" in args)
        print(p["Parameter"]["Value"])
    elif (service, command) == ("sqs", "receive-message"):
        got = boto3.client("sqs", **kw).receive_message(QueueUrl=opt("--queue-url"), MaxNumberOfMessages=1,
                                                        WaitTimeSeconds=0).get("Messages", [])
        # only the --query 'Messages[0].[ReceiptHandle,Body]' --output text shape the drain loop uses
        print(f"{got[0]['ReceiptHandle']}\t{got[0]['Body']}" if got else "None")
    elif (service, command) == ("sqs", "delete-message"):
        boto3.client("sqs", **kw).delete_message(QueueUrl=opt("--queue-url"), ReceiptHandle=opt("--receipt-handle"))
    elif (service, command) == ("s3", "cp"):
        src, dst = [a for a in args[2:] if not a.startswith("--") and a != opt("--region")][-2:]
        bucket, _, key = src.removeprefix("s3://").partition("/")
        boto3.client("s3", **kw).download_file(bucket, key, dst)
    else:
        sys.exit(f"fake aws: unsupported {service} {command}")
except Exception as exc:
    sys.exit(f"fake aws: {type(exc).__name__}")
'''
    )
    shutdown = directory / "shutdown"
    shutdown.write_text(f'#!/bin/sh\necho "$@" >> "{directory}/shutdown.log"\n')
    for path in (aws, shutdown):
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return directory


class HostAgent:
    """The SSM agent stand-in described in the module docstring."""

    def __init__(
        self,
        server: MotoServer,
        workdir: Path,
        online_after_s: float = 0.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.server = server
        self.env = dict(env or {})  # more environment for every script (the stand-in's PYTHONPATH)
        self.bin = _fake_bin(workdir / "bin")
        self.online_after_s = online_after_s
        self.never_online: set[str] = set()
        self.running_since: dict[str, float] = {}
        self.scripts: list[str] = []
        self._procs: dict[tuple[str, str], subprocess.Popen[bytes]] = {}
        self._cancelled: set[tuple[str, str]] = set()
        self._undo: list[tuple[Any, str, Any]] = []

    # -- install into moto ----------------------------------------------------------------------
    def install(self) -> HostAgent:
        from moto.core.responses import ActionResult, EmptyResult
        from moto.ssm.models import SimpleSystemManagerBackend
        from moto.ssm.responses import SimpleSystemManagerResponse

        agent = self
        original_send = SimpleSystemManagerBackend.send_command

        def describe_instance_information(self: Any) -> Any:
            wanted: set[str] | None = None
            for flt in self._get_param("Filters") or self._get_param("InstanceInformationFilterList") or []:
                if flt.get("Key") in ("InstanceIds", "InstanceIds".lower()):
                    wanted = set(flt.get("Values") or flt.get("valueSet") or [])
            return ActionResult(
                {"InstanceInformationList": agent.online_list(self.current_account, self.region, wanted)}
            )

        def cancel_command(self: Any) -> Any:
            agent.cancel(self._get_param("CommandId"), self._get_param("InstanceIds") or [])
            return EmptyResult()

        def send_command(backend: Any, **kwargs: Any) -> Any:
            wanted = set(kwargs.get("instance_ids") or [])  # before moto extends that very list
            command = original_send(backend, **kwargs)
            if wanted and not kwargs.get("targets"):
                # moto 5.2 reads no Targets as "every instance of the region" and adds an invocation
                # for each; SSM runs the command on the InstanceIds asked for only.
                command.invocations = [i for i in command.invocations if i["InstanceId"] in wanted]
                command.instance_ids = [i for i in command.instance_ids if i in wanted]
            agent.start(command)
            return command

        for target, name, value in (
            (SimpleSystemManagerResponse, "describe_instance_information", describe_instance_information),
            (SimpleSystemManagerResponse, "cancel_command", cancel_command),
            (SimpleSystemManagerBackend, "send_command", send_command),
        ):
            self._undo.append((target, name, getattr(target, name, None)))
            setattr(target, name, value)
        return self

    def uninstall(self) -> None:
        for target, name, value in reversed(self._undo):
            if value is None:
                delattr(target, name)
            else:
                setattr(target, name, value)
        self._undo.clear()
        for proc in list(self._procs.values()):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    # -- agent registration ----------------------------------------------------------------------
    def online_list(self, account: str, region: str, wanted: set[str] | None) -> list[dict[str, Any]]:
        from moto.ec2.models import ec2_backends

        now = time.monotonic()
        found = []
        for reservation in ec2_backends[account][region].all_reservations():
            for inst in reservation.instances:
                if wanted is not None and inst.id not in wanted:
                    continue
                if inst.state != "running" or inst.id in self.never_online:
                    self.running_since.pop(inst.id, None)
                    continue
                since = self.running_since.setdefault(inst.id, now)
                ping = "Online" if now - since >= self.online_after_s else None
                if ping:
                    found.append(
                        {
                            "InstanceId": inst.id,
                            "PingStatus": ping,
                            "AgentVersion": "3.3.0.0",
                            "PlatformType": "Linux",
                            "ResourceType": "EC2Instance",
                            "IPAddress": inst.private_ip,
                        }
                    )
        return found

    # -- commands ---------------------------------------------------------------------------------
    def start(self, command: Any) -> None:
        script = "\n".join(command.parameters.get("commands", []))
        timeout = float((command.parameters.get("executionTimeout") or ["3600"])[0])
        workdir = (command.parameters.get("workingDirectory") or [None])[0]
        self.scripts.append(script)
        for inv in command.invocations:
            inv.update(
                Status="InProgress", StatusDetails="InProgress", ResponseCode=-1, StandardOutputContent=""
            )
            threading.Thread(
                target=self._execute, args=(command.command_id, inv, script, timeout, workdir), daemon=True
            ).start()

    def _execute(
        self, command_id: str, inv: dict[str, Any], script: str, timeout: float, cwd: str | None
    ) -> None:
        key = (command_id, inv["InstanceId"])
        env = {
            "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.bin.parent),
            "RUNNERS_FAKE_AWS_ENDPOINT": self.server.url,
            "RUNNER_IDLE_DIR": str(self.bin.parent / "runner-idle"),  # the idle watcher's marks
            "LANG": "C.UTF-8",
            **self.env,
        }
        proc = subprocess.Popen(
            ["bash", "-c", script],
            cwd=cwd or str(self.bin.parent),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._procs[key] = proc
        timer = threading.Timer(timeout, lambda: proc.poll() is None and os.killpg(proc.pid, signal.SIGKILL))
        timer.start()
        assert proc.stdout is not None
        for raw in iter(proc.stdout.readline, b""):
            inv["StandardOutputContent"] = (inv["StandardOutputContent"] + raw.decode(errors="replace"))[
                :24_000
            ]
        code = proc.wait()
        timer.cancel()
        if key in self._cancelled:
            inv.update(Status="Cancelled", StatusDetails="Cancelled", ResponseCode=-1)
        elif code < 0:
            inv.update(Status="TimedOut", StatusDetails="ExecutionTimedOut", ResponseCode=-1)
        else:
            status = "Success" if code == 0 else "Failed"
            inv.update(Status=status, StatusDetails=status, ResponseCode=code)
        self._procs.pop(key, None)

    def cancel(self, command_id: str, instance_ids: list[str]) -> None:
        for (cid, iid), proc in list(self._procs.items()):
            if cid == command_id and (not instance_ids or iid in instance_ids):
                self._cancelled.add((cid, iid))
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGTERM)

    def running(self) -> int:
        return sum(1 for proc in self._procs.values() if proc.poll() is None)

    def shutdown_calls(self) -> list[str]:
        log = self.bin / "shutdown.log"
        return log.read_text().splitlines() if log.exists() else []


def aws_connection(url: str, region: str = "us-east-1") -> dict[str, Any]:
    """An Amazon provider Connection (JSON for AIRFLOW_CONN_*) pointing boto3 at the moto server."""
    return {
        "conn_type": "aws",
        "login": "testing",
        "password": "testing",
        "extra": {"endpoint_url": url, "region_name": region},
    }


def instances(ec2: Any, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every instance matching ``filters`` (DescribeInstances, all pages)."""
    found: list[dict[str, Any]] = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page["Reservations"]:
            found.extend(reservation["Instances"])
    return found
