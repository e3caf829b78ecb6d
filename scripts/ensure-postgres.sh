#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432 with trust auth for user "postgres"
# (what the end-to-end tests use). Installs and starts it from Debian's packages if needed.
# Needs root for the install/start steps; does nothing when PostgreSQL is already up.
set -euo pipefail

ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
ready && exit 0

if ! command -v pg_ctlcluster >/dev/null; then
    echo "installing PostgreSQL (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -1)
hba=/etc/postgresql/$version/main/pg_hba.conf
if ! grep -q "runners-e2e" "$hba"; then
    sed -i '1i host all all 127.0.0.1/32 trust # runners-e2e\nlocal all all trust # runners-e2e' "$hba"
fi
pg_ctlcluster --skip-systemctl-redirect "$version" main start || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
for _ in $(seq 1 30); do ready && exit 0; sleep 1; done
echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2
exit 1
