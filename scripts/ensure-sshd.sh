#!/usr/bin/env bash
# Make sure OpenSSH's server binary is installed for the ssh backend's tests (tests/support/sshd.py
# starts its own sshd on a free port; the system service is not used and need not run). Installs
# Debian's openssh-server if /usr/sbin/sshd is missing (needs root for that).
set -euo pipefail
if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null; then
    echo "sshd ready: $(/usr/sbin/sshd -V 2>&1 | head -1 || true)"
    exit 0
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
echo "installed openssh-server"
