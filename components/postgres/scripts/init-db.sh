# shellcheck shell=bash
# First-init hook for the official postgres image (/docker-entrypoint-initdb.d).
# The entrypoint SOURCES this file (mode 0644) with a temporary server on the
# unix socket and `set -Eeo pipefail`; so: no top-level exit, no leaked
# variables or `set` changes, failures via `return 1`.
#
# Creates the MLflow role, its two databases (tracking store MLFLOW_DB_NAME and
# basic-auth user store MLFLOW_AUTH_DB_NAME, hardened identically) and the
# read-only backup role.
# Passwords are read by psql itself from the environment (\getenv, psql >= 15):
# they never appear on a command line (visible in /proc), in this file, or in
# logs, and :'var' quoting makes any character in them safe.
#
# Safe to re-run: roles/databases are created only if missing, then their
# attributes, passwords and grants are (re)applied.

_mlflow_init_db() {
  local v roles_sql db_sql access_sql schema_sql
  for v in POSTGRES_USER POSTGRES_DB MLFLOW_DB_NAME MLFLOW_AUTH_DB_NAME MLFLOW_DB_USER MLFLOW_DB_PASSWORD BACKUP_DB_USER BACKUP_DB_PASSWORD; do
    if [[ -z "${!v:-}" ]]; then
      echo "init-db.sh: missing required environment variable $v" >&2
      return 1
    fi
  done
  # Handing POSTGRES_DB to the MLflow role, or one database to both stores,
  # would be a configuration mistake, not something to harden.
  if [[ "$MLFLOW_AUTH_DB_NAME" == "$MLFLOW_DB_NAME" || "$MLFLOW_AUTH_DB_NAME" == "$POSTGRES_DB" || "$MLFLOW_DB_NAME" == "$POSTGRES_DB" ]]; then
    echo "init-db.sh: invalid environment: MLFLOW_DB_NAME, MLFLOW_AUTH_DB_NAME and POSTGRES_DB must be three different databases" >&2
    return 1
  fi

  roles_sql=$(cat <<'SQL'
-- Never echo statements containing passwords: no error context/position,
-- and keep the server from logging them (log_statement, failing statement).
\set VERBOSITY terse
\set SHOW_CONTEXT never
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET client_min_messages = warning;
\getenv mlflow_pw MLFLOW_DB_PASSWORD
\getenv backup_pw BACKUP_DB_PASSWORD

-- MLflow application role: plain login, nothing else.
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'mlflow_user') AS need_role \gset
\if :need_role
CREATE ROLE :"mlflow_user" LOGIN;
\endif
ALTER ROLE :"mlflow_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'mlflow_pw';

-- Backup role: reads everything, writes nothing.
SELECT NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'backup_user') AS need_role \gset
\if :need_role
CREATE ROLE :"backup_user" LOGIN;
\endif
ALTER ROLE :"backup_user" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'backup_pw';
GRANT pg_read_all_data TO :"backup_user";
-- pg_read_all_data does not cover large objects before PG 18, and pg_dump
-- fails on an unreadable one. Membership in the MLflow role lets pg_dump read
-- the large objects MLflow's role owns. Cost: the backup credentials could
-- SET ROLE to the MLflow role; sessions default to read-only to make
-- accidental writes fail. Keep the backup Secret as tightly scoped as the
-- MLflow one.
GRANT :"mlflow_user" TO :"backup_user";
ALTER ROLE :"backup_user" SET default_transaction_read_only = on;
SQL
  )

  # Run once per MLflow database (psql variable `db`): the tracking store
  # (MLFLOW_DB_NAME) and the basic-auth user store (MLFLOW_AUTH_DB_NAME), which
  # every MLflow replica shares with the same role. Identical hardening.
  db_sql=$(cat <<'SQL'
-- An MLflow database, owned by its role.
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') AS need_db \gset
\if :need_db
CREATE DATABASE :"db" OWNER :"mlflow_user";
\endif
ALTER DATABASE :"db" OWNER TO :"mlflow_user";
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE :"db" TO :"mlflow_user";
SQL
  )

  access_sql=$(cat <<'SQL'
-- Nobody else may connect anywhere by default (superusers bypass this); the
-- backup role needs CONNECT on every database it dumps, and on `postgres`
-- for pg_dumpall --globals-only.
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', datname)
  FROM pg_database WHERE datname NOT IN (:'mlflow_db', :'mlflow_auth_db') AND datname <> 'template0' \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', datname, :'backup_user')
  FROM pg_database WHERE datallowconn AND NOT datistemplate \gexec
SQL
  )

  schema_sql=$(cat <<'SQL'
-- In an MLflow database the role owns `public` (PG 15 no longer grants
-- CREATE on it to PUBLIC), and PUBLIC keeps nothing there.
\connect :"db"
ALTER SCHEMA public OWNER TO :"mlflow_user";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO :"backup_user";
SQL
  )

  # Names and passwords never enter the SQL text: names are psql variables
  # (-v, quoted with :'' / :""), passwords are read by psql (\getenv).
  {
    printf '%s\n' "$roles_sql"
    printf '\\set db :mlflow_db\n%s\n' "$db_sql"
    printf '\\set db :mlflow_auth_db\n%s\n' "$db_sql"
    printf '%s\n' "$access_sql"
    printf '\\set db :mlflow_db\n%s\n' "$schema_sql"
    printf '\\set db :mlflow_auth_db\n%s\n' "$schema_sql"
  } | psql -X -q -v ON_ERROR_STOP=1 --no-password --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v mlflow_db="$MLFLOW_DB_NAME" -v mlflow_auth_db="$MLFLOW_AUTH_DB_NAME" \
    -v mlflow_user="$MLFLOW_DB_USER" -v backup_user="$BACKUP_DB_USER"
}

# Return (not exit): the entrypoint's `set -e` turns a non-zero status into a
# failed first init; on success leave nothing behind in its shell.
if _mlflow_init_db; then
  unset -f _mlflow_init_db
  echo "init-db.sh: created/updated role $MLFLOW_DB_USER, databases $MLFLOW_DB_NAME and $MLFLOW_AUTH_DB_NAME, backup role $BACKUP_DB_USER" >&2
else
  unset -f _mlflow_init_db
  return 1
fi
