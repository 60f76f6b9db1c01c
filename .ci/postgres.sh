#!/usr/bin/env bash
# PostgreSQL on 127.0.0.1:5432 as the tests expect it (trust auth, roles postgres and root, a
# database `test`): installs it from Debian when missing, starts the cluster when it is stopped,
# and leaves a running one alone. Sourced by .ci/run; `bash .ci/postgres.sh` runs it on its own.
set -euo pipefail

pg_log() { printf '=== postgres: %s\n' "$*"; }
postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432 >/dev/null 2>&1; }
pg_version() { ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1; }

ensure_postgres() {
  local installed=no version
  if ! command -v pg_ctlcluster >/dev/null 2>&1 || [[ -z "$(pg_version)" ]]; then
    pg_log "not installed: installing postgresql from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    installed=yes
  fi
  version="$(pg_version)"
  if [[ "$installed" == yes ]]; then
    # A cluster this script just made: trust on the socket and on loopback, as on the dev machines.
    printf 'local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n' \
      >"/etc/postgresql/$version/main/pg_hba.conf"
  fi
  if postgres_up && [[ "$installed" == no ]]; then
    pg_log "$version already running"
  else
    pg_log "starting $version"
    if [[ "$installed" == yes ]]; then
      pg_ctlcluster --skip-systemctl-redirect "$version" main restart
    else
      pg_ctlcluster --skip-systemctl-redirect "$version" main start
    fi
    local waited=0
    until postgres_up; do
      if ((waited >= 30)); then
        pg_log "$version did not come up in 30 s" >&2
        return 1
      fi
      sleep 1
      waited=$((waited + 1))
    done
    pg_log "$version up after ${waited}s"
  fi
  # The roles and the database the suites connect with (idempotent).
  local psql=(psql -h 127.0.0.1 -U postgres -d postgres -qtAX)
  if [[ "$("${psql[@]}" -c "select 1 from pg_roles where rolname = 'root'")" != 1 ]]; then
    "${psql[@]}" -c 'create role root superuser login' >/dev/null
  fi
  if [[ "$("${psql[@]}" -c "select 1 from pg_database where datname = 'test'")" != 1 ]]; then
    "${psql[@]}" -c 'create database test' >/dev/null
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then ensure_postgres; fi
