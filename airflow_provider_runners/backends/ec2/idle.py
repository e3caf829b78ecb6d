"""The EC2 host's idle watcher: how the ``ec2`` backend enforces ``spec.idle_timeout`` (docs/ec2.md).

A host cannot be watched from outside cheaply (the reaper runs every few minutes and only sees
tags), so the host watches itself. The user-data (:func:`~airflow_provider_runners.backends.ec2.plan.user_data`)
installs :data:`IDLE_WATCHER` as ``/usr/local/sbin/runner-idle-watch`` and a cloud-init
*per-boot* script that starts it on every boot (a warm-pool host that was stopped starts it
again). Every 30 s it:

1. reads the instance tags ``idle-timeout`` (seconds, or ``none``), ``runner-lineage`` and
   ``runner-pool-state`` from IMDSv2 (instance tags in metadata are enabled at launch);
2. counts activity: each SSM command the backend sends
   (:func:`~airflow_provider_runners.backends.ec2.ssm.build_script`) first runs
   :data:`ACTIVITY_LINES`, which touch ``/var/lib/runner-idle/last-active`` and leave
   ``active/<pid>`` while it runs; a live pid there is activity, and a new ``runner-lineage``
   (a warm-pool claim; the last one seen is kept in ``lineage`` there, so a restarted watcher
   compares with it) restarts the idle clock, as does a boot (a new ``boot_id``);
3. when the host is in use (not ``runner-pool-state=idle``), has an idle timeout and nothing
   was active for that long, runs ``shutdown -h now``: ``InstanceInitiatedShutdownBehavior=
   terminate`` then terminates the instance and its EBS volume. The reaper later finds the
   runner gone and closes its evidence chain (``end``, ``by: backstop``).

**Resources created:** on the host only — the two files above and ``/var/lib/runner-idle/``.
**Manual cleanup:** none needed (they go with the instance); to stop watching a host by hand,
``pkill -f runner-idle-watch`` on it, or set its ``idle-timeout`` tag to ``none``.

The environment variables ``RUNNER_IDLE_DIR``, ``RUNNER_IMDS``, ``RUNNER_IDLE_NOW`` and
``RUNNER_IDLE_ONCE`` exist for tests (a stand-in IMDS and clock); hosts never set them.
"""

from __future__ import annotations

from typing import ClassVar

#: The activity directory on the host (the watcher's and the commands' shared state).
IDLE_DIR = "/var/lib/runner-idle"
WATCHER_PATH = "/usr/local/sbin/runner-idle-watch"
PER_BOOT_PATH = "/var/lib/cloud/scripts/per-boot/runner-idle-watch.sh"

#: The first lines of every SSM command script: mark the host active while the command runs.
#: Errors are ignored: a host without the watcher (an older AMI run) still runs the command.
ACTIVITY_LINES = (
    f'RUNNER_IDLE_D="${{RUNNER_IDLE_DIR:-{IDLE_DIR}}}"',
    'mkdir -p "$RUNNER_IDLE_D/active" 2>/dev/null',
    'touch "$RUNNER_IDLE_D/last-active" "$RUNNER_IDLE_D/active/$$" 2>/dev/null',
    'trap \'rm -f "$RUNNER_IDLE_D/active/$$"; touch "$RUNNER_IDLE_D/last-active" 2>/dev/null\' EXIT',
)

IDLE_WATCHER = f"""#!/bin/bash
# airflow-provider-runners idle watcher (docs/ec2.md, "Idle timeout"): ends this host when no
# SSM command of the runner ran for the instance's idle-timeout tag. Nothing secret here.
D="${{RUNNER_IDLE_DIR:-{IDLE_DIR}}}"
IMDS="${{RUNNER_IMDS:-http://169.254.169.254}}"
now() {{ echo "${{RUNNER_IDLE_NOW:-$(date +%s)}}"; }}
mark() {{ touch -d "@$(now)" "$D/last-active"; }}
mkdir -p "$D/active"
BOOT=$(cat /proc/sys/kernel/random/boot_id 2>/dev/null)
if [ ! -e "$D/last-active" ] || [ "$BOOT" != "$(cat "$D/boot" 2>/dev/null)" ]; then
  echo "$BOOT" > "$D/boot"; mark
fi
while true; do
  T=$(curl -s -m 5 -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$IMDS/latest/api/token")
  tag() {{ curl -sf -m 5 -H "X-aws-ec2-metadata-token: $T" "$IMDS/latest/meta-data/tags/instance/$1"; }}
  IDLE=$(tag idle-timeout)
  LINEAGE=$(tag runner-lineage)
  STATE=$(tag runner-pool-state)
  if [ "$LINEAGE" != "$(cat "$D/lineage" 2>/dev/null)" ]; then echo "$LINEAGE" > "$D/lineage"; mark; fi
  BUSY=""
  for F in "$D"/active/*; do
    [ -e "$F" ] || continue
    if kill -0 "${{F##*/}}" 2>/dev/null; then BUSY=1; mark; else rm -f "$F"; fi
  done
  case "$IDLE" in
    ''|none|*[!0-9]*) ;;
    *)
      NOW=$(now)
      LAST=$(stat -c %Y "$D/last-active")
      if [ -z "$BUSY" ] && [ "$STATE" != idle ] && [ "$IDLE" -gt 0 ] && [ $((NOW - LAST)) -ge "$IDLE" ]; then
        echo "runner-idle-watch: idle for $((NOW - LAST))s >= idle-timeout ${{IDLE}}s: shutting down"
        shutdown -h now
        exit 0
      fi
      ;;
  esac
  [ -n "${{RUNNER_IDLE_ONCE:-}}" ] && exit 0
  sleep 30
done
"""

PER_BOOT = f"""#!/bin/sh
setsid {WATCHER_PATH} >/dev/null 2>&1 < /dev/null &
"""


def _block(text: str, indent: str = "      ") -> str:
    return "\n".join(indent + line if line else "" for line in text.rstrip("\n").split("\n"))


#: The cloud-config ``write_files`` section that installs the watcher (appended to the user-data).
WRITE_FILES = f"""write_files:
  - path: {WATCHER_PATH}
    permissions: "0755"
    content: |
{_block(IDLE_WATCHER)}
  - path: {PER_BOOT_PATH}
    permissions: "0755"
    content: |
{_block(PER_BOOT)}
"""


class EndsIdleHosts:
    """Mixin of :class:`~airflow_provider_runners.backends.ec2.backend.Ec2Backend`: it enforces
    ``spec.idle_timeout`` (the watcher above), so specs with one are accepted."""

    idle_timeout_unsupported: ClassVar[str | None] = None
