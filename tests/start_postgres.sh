#!/usr/bin/env bash
# Start (or reuse) a local PostgreSQL cluster on loopback and print a URL for a fresh test
# database. Prints nothing and exits non-zero when no server can be started. Needs root or the
# postgres user (as on CI and the developer machines).
set -u
command -v pg_ctlcluster >/dev/null 2>&1 || exit 1
ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1)
[ -n "$ver" ] || exit 1
pg_lsclusters -h 2>/dev/null | grep -q "^$ver main" || pg_createcluster "$ver" main >/dev/null 2>&1 || exit 1
pg_ctlcluster "$ver" main start >/dev/null 2>&1 || pg_lsclusters -h | grep -q "^$ver main .* online" || exit 1
as_pg() { if [ "$(id -un)" = postgres ]; then "$@"; else su postgres -c "$(printf '%q ' "$@")"; fi; }
as_pg psql -qtAc "SELECT 1 FROM pg_roles WHERE rolname='wm'" | grep -q 1 || as_pg psql -qc "CREATE ROLE wm LOGIN SUPERUSER PASSWORD 'wm'" >/dev/null || exit 1
db="wm_test_$$_$RANDOM"
as_pg createdb -O wm "$db" >/dev/null 2>&1 || exit 1
port=$(pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $3}')
echo "postgresql://wm:wm@127.0.0.1:${port}/${db}"
