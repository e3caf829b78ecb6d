"""SSM for the ``ec2`` backend: agent readiness, Run Command with streamed output, log flush.

Commands run through the ``AWS-RunShellScript`` document. The script the backend sends holds
**references** to secrets, never values: each ``secret_env`` entry becomes a line that asks
the host's AWS CLI, authenticated by the instance profile, for the value at run time::

    DB_PASSWORD="$(aws secretsmanager get-secret-value --region R --secret-id 'prod/erp' \\
        --query SecretString --output text | python3 -c '<pick a JSON key>' 'password')"

so SendCommand's parameters, the SSM command history, the task log and XCom never see it.
The instance profile needs ``secretsmanager:GetSecretValue`` / ``ssm:GetParameter`` on
exactly those secrets.

Output: ``GetCommandInvocation`` is polled and what is new in ``StandardOutputContent``
(stderr is merged into stdout by the script) is passed on line by line. SSM keeps at most
24,000 characters of output per invocation; longer output is cut there (send it to S3 or
CloudWatch from the script if it matters).
"""

from __future__ import annotations

import logging
import math
import shlex
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from airflow_provider_runners.backends.ec2.idle import ACTIVITY_LINES
from airflow_provider_runners.core.backend import CommandRequest, CommandResult, OutputSink
from airflow_provider_runners.core.secret_refs import parse_secret_ref

log = logging.getLogger(__name__)

DOCUMENT = "AWS-RunShellScript"
TERMINAL = frozenset({"Success", "Failed", "Cancelled", "TimedOut", "Cancelling"})
SSM_OUTPUT_LIMIT = 24_000
#: Exit code of the script when a secret reference could not be read on the host.
SECRET_FETCH_FAILED = 97
_PICK_JSON_KEY = "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])"


def secret_line(env_name: str, ref_text: str, region: str) -> str:
    """One shell line that reads a secret on the host; the value never appears in the script."""
    ref = parse_secret_ref(ref_text, f"secret_env.{env_name}")
    if ref.kind == "aws-sm":
        fetch = (
            f"aws secretsmanager get-secret-value --region {shlex.quote(region)} "
            f"--secret-id {shlex.quote(ref.name)} --query SecretString --output text"
        )
        if ref.key:
            fetch += f" | python3 -c {shlex.quote(_PICK_JSON_KEY)} {shlex.quote(ref.key)}"
    elif ref.kind == "ssm":
        fetch = (
            f"aws ssm get-parameter --region {shlex.quote(region)} --name {shlex.quote(ref.name)} "
            "--with-decryption --query Parameter.Value --output text"
        )
    else:  # checked before by check_kinds; never send a reference we cannot resolve on the host
        raise ValueError(f"secret_env.{env_name}: {ref.kind!r} references are not resolved on EC2 hosts")
    message = f"runner: could not read the secret reference for {env_name}"
    return (
        f'{env_name}="$({fetch})" || {{ echo {shlex.quote(message)} >&2; exit {SECRET_FETCH_FAILED}; }}\n'
        f"export {env_name}"
    )


def bundle_lines(bundles: Mapping[str, Mapping[str, Any]], drivers_dir: str, region: str) -> list[str]:
    """Fetch pinned driver bundles with a ``uri`` into ``drivers_dir`` once, verifying sha256."""
    lines = [f"export RUNNER_DRIVERS_DIR={shlex.quote(drivers_dir)}"]
    for ref, entry in sorted(bundles.items()):
        name, _, version = ref.partition("@")
        env = "RUNNER_DRIVER_" + "".join(c if c.isalnum() else "_" for c in name).upper()
        lines.append(f"export {env}={shlex.quote(version)}")
        uri = entry.get("uri")
        if not uri:
            continue  # baked into the AMI; the version is recorded in the evidence
        target = f"{drivers_dir}/{name}/{version}/{uri.rsplit('/', 1)[-1]}"
        qt = shlex.quote(target)
        lines.append(
            f'[ -f {qt} ] || {{ mkdir -p "$(dirname {qt})" && '
            f"aws s3 cp --region {shlex.quote(region)} --quiet {shlex.quote(uri)} {qt}.part && "
            f"mv {qt}.part {qt}; }}"
        )
        lines.append(
            f"echo {shlex.quote(entry['sha256'] + '  ' + target)} | sha256sum -c --status - || "
            f"{{ echo {shlex.quote(f'runner: driver bundle {ref} does not match its pinned sha256')} >&2; "
            "exit 98; }"
        )
    return lines


def build_script(
    request: CommandRequest,
    region: str,
    bundles: Mapping[str, Mapping[str, Any]] | None = None,
    drivers_dir: str = "/opt/runner/drivers",
) -> str:
    """The shell script sent to the host: env, secret fetches, driver bundles, then the command."""
    lines = [
        "set +x",
        "exec 2>&1",
        *ACTIVITY_LINES,
        f"export RUNNER_COMMAND_NAME={shlex.quote(request.name)}",
    ]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in sorted(request.env.items())]
    lines += [secret_line(name, ref, region) for name, ref in sorted(request.secret_env.items())]
    if bundles:
        lines += bundle_lines(bundles, drivers_dir, region)
    if request.workdir:
        lines.append(f"cd {shlex.quote(request.workdir)} || exit 96")
    command = request.command if isinstance(request.command, str) else shlex.join(request.command)
    lines.append(command)
    return "\n".join(lines)


def send(ssm: Any, instance_id: str, script: str, comment: str, timeout_s: float) -> str:
    """SendCommand (AWS-RunShellScript); the host kills it after ``executionTimeout``."""
    execution_timeout = max(30, min(172_800, math.ceil(timeout_s) + 60))
    response = ssm.send_command(
        InstanceIds=[instance_id],
        DocumentName=DOCUMENT,
        Comment=comment[:100],
        TimeoutSeconds=max(30, min(2_592_000, math.ceil(timeout_s))),
        Parameters={"commands": [script], "executionTimeout": [str(execution_timeout)]},
    )
    return str(response["Command"]["CommandId"])


def invocation(ssm: Any, command_id: str, instance_id: str) -> dict[str, Any] | None:
    """GetCommandInvocation, or None while SSM has not registered it yet."""
    try:
        result: dict[str, Any] = ssm.get_command_invocation(CommandId=command_id, InstanceId=instance_id)
    except ssm.exceptions.InvocationDoesNotExist:
        return None
    return result


class _Streamer:
    """Passes on the new part of the growing output, whole lines only until the end."""

    def __init__(self, output: OutputSink) -> None:
        self.output = output
        self.sent = 0
        self.partial = ""

    def feed(self, content: str, final: bool = False) -> None:
        new = content[self.sent :]
        self.sent = len(content)
        text = self.partial + new
        *lines, self.partial = text.split("\n")
        for line in lines:
            self.output(line)
        if final:
            if self.partial:
                self.output(self.partial)
                self.partial = ""
            if len(content) >= SSM_OUTPUT_LIMIT:
                self.output(f"[output cut by SSM at {SSM_OUTPUT_LIMIT} characters]")


def run(
    ssm: Any,
    instance_id: str,
    request: CommandRequest,
    script: str,
    output: OutputSink,
    cancel: threading.Event,
    poll_s: float = 2.0,
) -> CommandResult:
    """Send the script, stream its output, map the end state; cancel on ``cancel`` or timeout."""
    started = time.monotonic()
    command_id = send(ssm, instance_id, script, request.name, request.timeout)
    details: dict[str, Any] = {"ssm_command_id": command_id, "instance_id": instance_id, "document": DOCUMENT}
    streamer = _Streamer(output)
    deadline = started + request.timeout
    status = "Pending"
    while True:
        inv = invocation(ssm, command_id, instance_id)
        if inv is not None:
            status = inv.get("Status", "Pending")
            final = status in TERMINAL
            streamer.feed(inv.get("StandardOutputContent") or "", final=final)
            if final:
                code = inv.get("ResponseCode")
                details.update(ssm_status=status, wall_s=round(time.monotonic() - started, 3))
                if status == "Success":
                    return CommandResult(exit_code=0, details=details)
                if status == "Failed" and isinstance(code, int) and code >= 0:
                    return CommandResult(exit_code=code, details=details)
                if status == "TimedOut":
                    return CommandResult(exit_code=None, timed_out=True, details=details)
                return CommandResult(exit_code=None, cancelled=True, details=details)
        timed_out = time.monotonic() >= deadline
        if cancel.is_set() or timed_out:
            status = stop(ssm, command_id, instance_id, streamer)
            details.update(ssm_status=status, wall_s=round(time.monotonic() - started, 3))
            return CommandResult(
                exit_code=None, timed_out=timed_out, cancelled=not timed_out, details=details
            )
        # Check cancel at least every 0.5 s while waiting for the next poll.
        cancel.wait(min(poll_s, max(0.0, deadline - time.monotonic())) or 0.01)


def stop(ssm: Any, command_id: str, instance_id: str, streamer: _Streamer, wait_s: float = 20.0) -> str:
    """CancelCommand and wait (bounded) for the invocation to reach an end state."""
    try:
        ssm.cancel_command(CommandId=command_id, InstanceIds=[instance_id])
    except Exception as exc:  # noqa: BLE001 - already ended or not cancellable: report its state
        log.warning("cancel of SSM command %s on %s: %s", command_id, instance_id, exc)
    until = time.monotonic() + wait_s
    status = "Cancelling"
    while time.monotonic() < until:
        inv = invocation(ssm, command_id, instance_id)
        if inv is not None:
            status = inv.get("Status", status)
            if status in TERMINAL and status != "Cancelling":
                streamer.feed(inv.get("StandardOutputContent") or "", final=True)
                break
        time.sleep(0.5)
    return status


def online(ssm: Any, instance_ids: Iterable[str]) -> dict[str, str]:
    """SSM agent PingStatus per instance (missing: the agent has not registered yet)."""
    ids = list(instance_ids)
    found: dict[str, str] = {}
    for start in range(0, len(ids), 50):
        chunk = ids[start : start + 50]
        kwargs: dict[str, Any] = {"Filters": [{"Key": "InstanceIds", "Values": chunk}], "MaxResults": 50}
        while True:
            page = ssm.describe_instance_information(**kwargs)
            for info in page.get("InstanceInformationList", []):
                found[info["InstanceId"]] = info.get("PingStatus", "Unknown")
            token = page.get("NextToken")
            if not token:
                break
            kwargs["NextToken"] = token
    return found


def flush_logs(ssm: Any, instance_id: str, command: str, wait_s: float = 60.0) -> dict[str, Any]:
    """Run the log flush command before a stop/terminate; best effort, bounded wait."""
    started = time.monotonic()
    try:
        command_id = send(ssm, instance_id, f"set +x\n{command}", "runner teardown: flush logs", 60)
    except Exception as exc:  # noqa: BLE001 - teardown continues; the backstop still applies
        return {"flushed": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    status = "Pending"
    while time.monotonic() - started < wait_s:
        inv = invocation(ssm, command_id, instance_id)
        if inv is not None:
            status = inv.get("Status", status)
            if status in TERMINAL:
                break
        time.sleep(0.5)
    return {
        "flushed": status == "Success",
        "status": status,
        "ssm_command_id": command_id,
        "flush_s": round(time.monotonic() - started, 3),
    }
