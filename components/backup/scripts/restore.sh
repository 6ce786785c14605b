#!/usr/bin/env bash
# Restore one database of a backup run made by backup.sh.
# Order matters: the dump is downloaded and checked (sha256 + size from the
# manifest) BEFORE anything touches the target server; the restore runs in one
# transaction (all or nothing); then every table's row count is compared with
# the counts taken in the backup's snapshot.
#
# Ownership: objects are restored with --no-owner --role=<owner>, where owner
# is RESTORE_OWNER, else the source database's owner recorded in the manifest
# (the MLflow role), if that role exists on the target; otherwise the
# connecting (super)user owns everything and a warning is logged. New target
# databases are created from template0 owned by that role.
set -Eeuo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

WORK=""; OWN_SCRATCH=""
cleanup() {
  [[ -n "$WORK" ]] && rm -rf "$WORK"
  [[ -n "$OWN_SCRATCH" ]] && rm -rf "$OWN_SCRATCH"
}
install_traps

require_env PGHOST PGUSER BACKUP_BUCKET BACKUP_PREFIX AWS_REGION
set_timeouts
BACKUP_PREFIX=${BACKUP_PREFIX%/}
RUN=${RESTORE_RUN_ID:-latest}
SRC_DB=${RESTORE_DATABASE:-mlflow}
DST_DB=${RESTORE_TARGET_DATABASE:-$SRC_DB}
GLOBALS=${RESTORE_GLOBALS:-false}
[[ "$GLOBALS" == true || "$GLOBALS" == false ]] || die 2 "invalid RESTORE_GLOBALS '$GLOBALS' (expected true or false)"
[[ "$RUN" =~ ^[0-9A-Za-z_][0-9A-Za-z_.-]{0,63}$ ]] || die 2 "invalid RESTORE_RUN_ID '$RUN'"
if [[ -n "${RESTORE_SCRATCH_DIR:-}" ]]; then
  SCRATCH=$RESTORE_SCRATCH_DIR
  mkdir -p "$SCRATCH" || die 2 "invalid RESTORE_SCRATCH_DIR '$SCRATCH': cannot create"
else
  SCRATCH=$(mktemp -d); OWN_SCRATCH=$SCRATCH
fi
WORK=$(mktemp -d -p "$SCRATCH")
aws_config "$WORK"
MAINT_DB=${PGDATABASE:-postgres}
MAINT=$(db_conn "$MAINT_DB")
T_RUN=$(now_us)

t=$(now_us)
"${PSQL[@]}" -d "$MAINT" -c 'SELECT 1' >/dev/null 2>"$WORK/err" \
  || die 1 "cannot connect to target PostgreSQL at ${PGHOST}:${PGPORT:-5432} as $PGUSER: $(tr '\n' ' ' <"$WORK/err")"
log "step=connect seconds=$(since "$t")"

# s3_read KEY FILE WHAT: download a small object, or die saying what is missing.
# (Never inside $(...): die would lose its reason in the subshell.)
s3_read() {
  aws s3 cp "s3://$BACKUP_BUCKET/$1" "$2" --only-show-errors 2>"$WORK/err" && return 0
  if grep -qE 'NoSuchKey|Not Found|\(404\)|does not exist' "$WORK/err"; then
    die 1 "$3 (s3://$BACKUP_BUCKET/$1 does not exist)"
  fi
  die 1 "cannot read s3://$BACKUP_BUCKET/$1: $(err_of "$WORK/err")"
}
jget() { json_get "$MAINT" "$1" "$2"; }

# --- which run ----------------------------------------------------------------
# A run exists only with its manifest (backup.sh writes it last): objects of a
# run without one are never read.
t=$(now_us)
if [[ "$RUN" == latest ]]; then
  s3_read "$BACKUP_PREFIX/latest.json" "$WORK/latest.json" "no latest.json: no backup run has completed in this bucket and prefix yet"
  pointer=$(<"$WORK/latest.json")
  MANIFEST_KEY=$(jget "$pointer" '{manifest_key}') || die 1 "latest.json is not valid JSON"
  RUN=$(jget "$pointer" '{run_id}')
else
  MANIFEST_KEY="$BACKUP_PREFIX/runs/$RUN/manifest.json"
fi
s3_read "$MANIFEST_KEY" "$WORK/manifest.json" "backup run $RUN has no manifest: it never completed, or it was deleted"
MANIFEST=$(<"$WORK/manifest.json")
entry=$("${PSQL[@]}" -d "$MAINT" -v m="$MANIFEST" -v db="$SRC_DB" <<'SQL'
SELECT jsonb_path_query_first(:'m'::jsonb, '$.databases[*] ? (@.name == $n)', jsonb_build_object('n', :'db'));
SQL
) || die 1 "manifest $MANIFEST_KEY is not valid JSON"
[[ -n "$entry" ]] || die 1 "database '$SRC_DB' is not in backup run $RUN"
DUMP_KEY=$(jget "$entry" '{key}'); DUMP_SIZE=$(jget "$entry" '{size_bytes}'); DUMP_SHA=$(jget "$entry" '{sha256}')
EXPECTED=$(jget "$entry" '{contents}'); SRC_OWNER=$(jget "$entry" '{owner}')
log "step=manifest run=$RUN key=$MANIFEST_KEY seconds=$(since "$t")"

# fetch_checked KEY SIZE SHA FILE: download, then refuse unless size and sha256 match.
fetch_checked() {
  local t; t=$(now_us)
  aws s3 cp "s3://$BACKUP_BUCKET/$1" "$4" --only-show-errors 2>"$WORK/err" \
    || die 1 "cannot download s3://$BACKUP_BUCKET/$1: $(tr '\n' ' ' <"$WORK/err")"
  local size sha
  size=$(stat -c %s "$4"); sha=$(sha256sum "$4" | cut -d' ' -f1)
  [[ "$size" == "$2" ]] || die 3 "integrity check failed for $1: size $size != manifest $2; nothing restored"
  [[ "$sha" == "$3" ]] || die 3 "integrity check failed for $1: sha256 $sha != manifest $3; nothing restored"
  log "step=download key=$1 bytes=$size sha256=ok seconds=$(since "$t")"
}

DUMP_FILE="$WORK/dump"
fetch_checked "$DUMP_KEY" "$DUMP_SIZE" "$DUMP_SHA" "$DUMP_FILE"

# --- globals (optional) -------------------------------------------------------
if [[ "$GLOBALS" == true ]]; then
  t=$(now_us)
  fetch_checked "$(jget "$MANIFEST" '{globals,key}')" "$(jget "$MANIFEST" '{globals,size_bytes}')" \
    "$(jget "$MANIFEST" '{globals,sha256}')" "$WORK/globals.sql"
  # Roles that already exist (at least the connecting superuser) are expected;
  # any other error fails the restore. Roles come back WITHOUT passwords
  # (dumped with --no-role-passwords): re-set them from the Secrets.
  # (No ON_ERROR_STOP here, so psql exits 0 on SQL errors; non-zero = could not run at all.)
  psql -X -w -q -d "$MAINT" -f "$WORK/globals.sql" >/dev/null 2>"$WORK/globals.err" \
    || die 1 "applying globals failed: $(head -n3 "$WORK/globals.err" | tr '\n' ' ')"
  if grep 'ERROR:' "$WORK/globals.err" | grep -qv 'role ".*" already exists'; then
    die 1 "applying globals failed: $(grep 'ERROR:' "$WORK/globals.err" | grep -v 'already exists' | head -n3 | tr '\n' ' ')"
  fi
  log "step=globals seconds=$(since "$t")"
fi

# --- target database and owner -----------------------------------------------
t=$(now_us)
OWNER=${RESTORE_OWNER:-$SRC_OWNER}
has_owner=$("${PSQL[@]}" -d "$MAINT" -v r="$OWNER" <<<"SELECT count(*) FROM pg_roles WHERE rolname = :'r'")
if [[ "$has_owner" != 1 ]]; then
  [[ -z "${RESTORE_OWNER:-}" ]] || die 2 "invalid RESTORE_OWNER: role '$OWNER' does not exist on the target"
  log "WARNING: role '$OWNER' does not exist on the target; objects will be owned by $PGUSER"
  OWNER=$("${PSQL[@]}" -d "$MAINT" -c 'SELECT current_user')
fi
"${PSQL[@]}" -d "$MAINT" -v db="$DST_DB" -v owner="$OWNER" <<'SQL' || die 1 "cannot create database $DST_DB"
SELECT NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') AS need_db \gset
\if :need_db
CREATE DATABASE :"db" OWNER :"owner" TEMPLATE template0;
\endif
SQL
log "step=target db=$DST_DB owner=$OWNER seconds=$(since "$t")"

# --- restore: one transaction, stop at the first error -------------------------
t=$(now_us)
role_args=()
is_super=$("${PSQL[@]}" -d "$MAINT" -v r="$OWNER" <<<"SELECT rolsuper FROM pg_roles WHERE rolname = :'r'")
[[ "$is_super" == t ]] || role_args=(--role="$OWNER")
pg_restore -w --clean --if-exists --no-owner "${role_args[@]}" --single-transaction --exit-on-error \
  -d "$(db_conn "$DST_DB")" "$DUMP_FILE" 2>"$WORK/restore.err" \
  || die 1 "pg_restore into $DST_DB failed (rolled back): $(head -n3 "$WORK/restore.err" | tr '\n' ' ')"
log "step=pg_restore db=$DST_DB bytes=$DUMP_SIZE seconds=$(since "$t")"

# --- compare contents with the counts taken in the backup snapshot ---------------
t=$(now_us)
result=$("${PSQL[@]}" -d "$(db_conn "$DST_DB")" -v expected="$EXPECTED" <<SQL
${CONTENTS_SQL%;}
\gset actual_
SELECT count(*) || ' ' || coalesce(sum(e.value::bigint), 0) || ' ' || coalesce(string_agg(
         format('%s expected %s got %s', e.key, e.value, coalesce(a.value, 'missing')), '; ' ORDER BY e.key)
         FILTER (WHERE a.value IS DISTINCT FROM e.value), '')
       || CASE WHEN (:'expected'::json ->> 'large_objects') IS DISTINCT FROM (:'actual_contents'::json ->> 'large_objects')
               THEN format('; large objects expected %s got %s', :'expected'::json ->> 'large_objects',
                           :'actual_contents'::json ->> 'large_objects') ELSE '' END
FROM json_each_text(:'expected'::json -> 'tables') e
LEFT JOIN json_each_text(:'actual_contents'::json -> 'tables') a USING (key);
SQL
) || die 1 "cannot count rows in restored database $DST_DB"
read -r n_tables n_rows mismatch <<<"$result"
[[ -z "$mismatch" ]] || die 4 "row count mismatch in $DST_DB: ${mismatch#; }"
log "step=compare tables=$n_tables rows=$n_rows large_objects=ok seconds=$(since "$t")"

OK_MESSAGE="run=$RUN database=$SRC_DB target=$DST_DB tables=$n_tables rows=$n_rows bytes=$DUMP_SIZE seconds=$(since "$T_RUN")"
