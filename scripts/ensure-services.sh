#!/usr/bin/env bash
# Make sure the services the end-to-end tests use are up: PostgreSQL on 127.0.0.1:5432 with
# trust auth for user "postgres", and Redis on 127.0.0.1:6379. Installs them from Debian's
# packages and starts them if needed (needs root for that); does nothing when both are up.
set -euo pipefail

pg_ready() { command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432; }
redis_ready() { command -v redis-cli >/dev/null && [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
updated=""
apt_install() {
    [ -n "$updated" ] || { apt-get update -qq; updated=1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! pg_ready; then
    command -v pg_ctlcluster >/dev/null || { echo "installing PostgreSQL"; apt_install postgresql; }
    version=$(ls /etc/postgresql | sort -V | tail -1)
    hba=/etc/postgresql/$version/main/pg_hba.conf
    if ! grep -q "runners-e2e" "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust # runners-e2e\nlocal all all trust # runners-e2e' "$hba"
    fi
    pg_ctlcluster --skip-systemctl-redirect "$version" main start \
        || pg_ctlcluster --skip-systemctl-redirect "$version" main reload
    for _ in $(seq 1 30); do pg_ready && break; sleep 1; done
    pg_ready || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
fi

if ! redis_ready; then
    command -v redis-server >/dev/null || { echo "installing Redis"; apt_install redis-server; }
    mkdir -p /var/lib/redis /var/log/redis
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/runners-e2e.log
    for _ in $(seq 1 30); do redis_ready && break; sleep 1; done
    redis_ready || { echo "Redis did not come up on 127.0.0.1:6379" >&2; exit 1; }
fi
echo "services ready: PostgreSQL 127.0.0.1:5432, Redis 127.0.0.1:6379"
