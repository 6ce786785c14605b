#!/usr/bin/env bash
# Role reconcile Job: brings a running server's roles, databases, passwords
# and grants to what the program declares, on a new volume and on one that
# has held data for years alike. init-db.sh only runs on an empty volume; this
# runs on every `pulumi up` whose SQL or passwords changed, and any number of
# times in a row without changing anything but the password verifiers' salt.
#
# Environment: libpq's PGHOST/PGPORT/PGUSER/PGPASSWORD (the superuser, over
# TCP), init-db.sh's variables (POSTGRES_USER, POSTGRES_DB, MLFLOW_*,
# BACKUP_*), ROLES_SQL (the extra roles' SQL, may be empty) and each extra
# role's ROLE_<NAME>_PASSWORD. WAIT_SECONDS bounds the wait for the server.
set -Eeuo pipefail

fail() { echo "reconcile-roles: FAILED: $*" >&2; exit 1; }
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

for v in PGHOST PGUSER PGPASSWORD; do
  [[ -n "${!v:-}" ]] || fail "missing required environment variable $v"
done

# The first `pulumi up` starts this beside a database that may still be
# initialising; a later one may meet a pod being rolled.
deadline=$((SECONDS + ${WAIT_SECONDS:-600}))
until pg_isready -q -d postgres -t 5 >/dev/null 2>&1; do
  (( SECONDS + 2 <= deadline )) || fail "server $PGHOST:${PGPORT:-5432} not accepting connections after ${WAIT_SECONDS:-600} s"
  echo "reconcile-roles: waiting for $PGHOST:${PGPORT:-5432}" >&2
  sleep 2
done

# The same SQL as the first init: one definition of the MLflow and backup
# roles, so a rebuilt or long-lived database ends up exactly like a new one.
# shellcheck source=init-db.sh
. "$here/init-db.sh" || fail "core roles (MLflow, backup) could not be applied"

if [[ -n "${ROLES_SQL:-}" && -s "$ROLES_SQL" ]]; then
  psql -X -q -v ON_ERROR_STOP=1 --no-password -d postgres -f "$ROLES_SQL" \
    || fail "extra roles could not be applied ($ROLES_SQL)"
fi
echo "reconcile-roles: OK: roles, databases, passwords and grants match the program" >&2
