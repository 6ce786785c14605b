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

WORK=""; OWN_SCRATCH=""; ASIDE_MADE=""; BLOCKED=""
cleanup() {
  # A failed restore leaves the target as it was: open, and without the half-built copy.
  if [[ -n "$BLOCKED" ]]; then
    "${PSQL[@]}" -d "$MAINT" -v db="$DST_DB" <<<'ALTER DATABASE :"db" ALLOW_CONNECTIONS true;' >/dev/null 2>&1 \
      || log "WARNING: could not re-open $DST_DB to connections: ALTER DATABASE \"$DST_DB\" ALLOW_CONNECTIONS true"
  fi
  if [[ -n "$ASIDE_MADE" ]]; then
    "${PSQL[@]}" -d "$MAINT" -v db="$ASIDE" <<<'DROP DATABASE IF EXISTS :"db" WITH (FORCE);' >/dev/null 2>&1 \
      || log "WARNING: could not drop $ASIDE; drop it by hand"
  fi
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

# --- build aside ------------------------------------------------------------------
# The dump is restored into a new database next to the target, checked, and
# only then swapped in by renaming: a restore replaces, it never merges
# (objects created after the backup cannot survive it), and the previous
# database stays as <target>_before_<run> for a rollback (README "Backups").
t=$(now_us)
OWNER=${RESTORE_OWNER:-$SRC_OWNER}
has_owner=$("${PSQL[@]}" -d "$MAINT" -v r="$OWNER" <<<"SELECT count(*) FROM pg_roles WHERE rolname = :'r'")
if [[ "$has_owner" != 1 ]]; then
  [[ -z "${RESTORE_OWNER:-}" ]] || die 2 "invalid RESTORE_OWNER: role '$OWNER' does not exist on the target"
  log "WARNING: role '$OWNER' does not exist on the target; objects will be owned by $PGUSER"
  OWNER=$("${PSQL[@]}" -d "$MAINT" -c 'SELECT current_user')
fi
ASIDE="${DST_DB}_restoring_${RUN}"
BEFORE="${DST_DB}_before_${RUN}"
for n in "$ASIDE" "$BEFORE"; do
  (($(printf '%s' "$n" | wc -c) <= 63)) || die 2 "database name '$n' would exceed PostgreSQL's 63 bytes; restore into a shorter RESTORE_TARGET_DATABASE"
done
# The original whose owner, hardening and grants the new database gets: the
# target itself, or (restoring a copy under a new name) the source database.
state=$("${PSQL[@]}" -d "$MAINT" -v dst="$DST_DB" -v src="$SRC_DB" -v before="$BEFORE" <<'SQL'
SELECT coalesce((SELECT datname FROM pg_database WHERE datname = :'dst'), '') || '|'
    || coalesce((SELECT datname FROM pg_database WHERE datname IN (:'dst', :'src') ORDER BY datname = :'dst' DESC LIMIT 1), '') || '|'
    || EXISTS (SELECT 1 FROM pg_database WHERE datname = :'before');
SQL
) || die 1 "cannot read the target server's databases"
IFS='|' read -r TARGET_EXISTS ORIGINAL before_exists <<<"$state"
[[ "$before_exists" == false ]] \
  || die 2 "database $BEFORE already exists (an earlier restore of run $RUN into $DST_DB): roll it back or drop it first (README \"Backups\")"
ASIDE_MADE=""
"${PSQL[@]}" -d "$MAINT" -v aside="$ASIDE" -v orig="$ORIGINAL" -v owner="$OWNER" >/dev/null 2>"$WORK/err" <<'SQL' \
  || die 1 "cannot create database $ASIDE: $(err_of "$WORK/err")"
-- Only this script makes databases of this name: a leftover is an interrupted restore of this run.
DROP DATABASE IF EXISTS :"aside";
SELECT coalesce((SELECT format('ENCODING %L LC_COLLATE %L LC_CTYPE %L', pg_encoding_to_char(encoding), datcollate, datctype)
                 FROM pg_database WHERE datname = :'orig'), '') AS locale,
       coalesce((SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = :'orig'), :'owner') AS dbowner \gset
CREATE DATABASE :"aside" OWNER :"dbowner" TEMPLATE template0 :locale;
SQL
ASIDE_MADE=yes
log "step=create db=$ASIDE like=${ORIGINAL:-none} owner=$OWNER seconds=$(since "$t")"

# --- restore: one transaction, stop at the first error -------------------------
t=$(now_us)
role_args=()
is_super=$("${PSQL[@]}" -d "$MAINT" -v r="$OWNER" <<<"SELECT rolsuper FROM pg_roles WHERE rolname = :'r'")
[[ "$is_super" == t ]] || role_args=(--role="$OWNER")
pg_restore -w --no-owner "${role_args[@]}" --single-transaction --exit-on-error \
  -d "$(db_conn "$ASIDE")" "$DUMP_FILE" 2>"$WORK/restore.err" \
  || die 1 "pg_restore into $ASIDE failed (rolled back; $DST_DB untouched): $(head -n3 "$WORK/restore.err" | tr '\n' ' ')"
log "step=pg_restore db=$ASIDE bytes=$DUMP_SIZE seconds=$(since "$t")"

# --- compare contents with the counts taken in the backup snapshot ---------------
t=$(now_us)
result=$("${PSQL[@]}" -d "$(db_conn "$ASIDE")" -v expected="$EXPECTED" <<SQL
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
) || die 1 "cannot count rows in restored database $ASIDE"
read -r n_tables n_rows mismatch <<<"$result"
[[ -z "$mismatch" ]] || die 4 "row count mismatch in $ASIDE ($DST_DB untouched): ${mismatch#; }"
log "step=compare tables=$n_tables rows=$n_rows large_objects=ok seconds=$(since "$t")"

# --- same hardening as the original ------------------------------------------------
# pg_dump carries object grants, but not the database's own ACL, connection
# limit and settings, and --no-owner leaves schemas (public) to the restoring
# role: copied here from the original, so the swap changes data, not access.
if [[ -n "$ORIGINAL" ]]; then
  t=$(now_us)
  schemas=$("${PSQL[@]}" -d "$(db_conn "$ORIGINAL")" <<'SQL'
SELECT coalesce(json_agg(json_build_object('n', nspname, 'o', pg_get_userbyid(nspowner))), '[]')
FROM pg_namespace WHERE nspname !~ '^pg_' AND nspname <> 'information_schema';
SQL
  ) || die 1 "cannot read the schemas of $ORIGINAL"
  "${PSQL[@]}" -d "$MAINT" -v aside="$ASIDE" -v orig="$ORIGINAL" >/dev/null 2>"$WORK/err" <<'SQL' \
    || die 1 "cannot copy the database-level grants and settings of $ORIGINAL to $ASIDE: $(err_of "$WORK/err")"
SELECT oid AS orig_oid, datconnlimit AS connlimit, datacl IS NOT NULL AS has_acl FROM pg_database WHERE datname = :'orig' \gset
ALTER DATABASE :"aside" CONNECTION LIMIT :connlimit;
\if :has_acl
REVOKE ALL ON DATABASE :"aside" FROM PUBLIC;
SELECT format('GRANT %s ON DATABASE %I TO %s%s', a.privilege_type, :'aside',
              CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(a.grantee)) END,
              CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END)
FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = :'orig' \gexec
\endif
-- Settings (ALTER DATABASE / ALTER ROLE .. IN DATABASE .. SET): set_config parses each stored
-- value exactly as the server does, FROM CURRENT stores it again.
SELECT format('SELECT set_config(%L, %L, true)', split_part(c, '=', 1), substr(c, strpos(c, '=') + 1))
       || format('; ALTER %s SET %I FROM CURRENT',
                 CASE WHEN s.setrole = 0 THEN format('DATABASE %I', :'aside')
                      ELSE format('ROLE %I IN DATABASE %I', pg_get_userbyid(s.setrole), :'aside') END,
                 split_part(c, '=', 1))
FROM pg_db_role_setting s, unnest(s.setconfig) c WHERE s.setdatabase = :orig_oid \gexec
SQL
  "${PSQL[@]}" -d "$(db_conn "$ASIDE")" -v schemas="$schemas" >/dev/null 2>"$WORK/err" <<'SQL' \
    || die 1 "cannot give $ASIDE's schemas the owners they have in $ORIGINAL: $(err_of "$WORK/err")"
SELECT format('ALTER SCHEMA %I OWNER TO %I', s.n, s.o)
FROM json_to_recordset(:'schemas'::json) s(n text, o text)
JOIN pg_namespace n ON n.nspname = s.n WHERE pg_get_userbyid(n.nspowner) <> s.o \gexec
SQL
  log "step=hardening like=$ORIGINAL seconds=$(since "$t")"
fi

# --- swap ---------------------------------------------------------------------------
# New connections to the target are refused, MLflow's (the owner's) are
# closed, anyone else's are waited for up to lock_timeout; then both renames
# commit in one transaction. The old database keeps ALLOW_CONNECTIONS false:
# nothing writes to the rollback copy.
t=$(now_us)
BLOCKED=""
if [[ -n "$TARGET_EXISTS" ]]; then
  "${PSQL[@]}" -d "$MAINT" -v db="$DST_DB" >/dev/null 2>"$WORK/err" <<<'ALTER DATABASE :"db" ALLOW_CONNECTIONS false;' \
    || die 1 "cannot close $DST_DB to new connections: $(err_of "$WORK/err")"
  BLOCKED=yes
  log "step=swap closed $DST_DB to new connections; closing the owner's ($OWNER) sessions, waiting up to $LOCK_TIMEOUT (lock_timeout) for others"
  if ! "${PSQL[@]}" -d "$MAINT" -v db="$DST_DB" -v owner="$OWNER" >/dev/null 2>"$WORK/err" <<'SQL'; then
\set VERBOSITY terse
SELECT set_config('restore.db', :'db', false), set_config('restore.owner', :'owner', false);
DO $$
DECLARE
  db text := current_setting('restore.db');
  deadline timestamptz := clock_timestamp() + coalesce(nullif(current_setting('lock_timeout')::interval, '0'), '100 years');
  others text;
BEGIN
  LOOP
    PERFORM pg_stat_clear_snapshot();   -- pg_stat_activity is otherwise frozen for the transaction
    PERFORM pg_terminate_backend(a.pid, 5000) FROM pg_stat_activity a JOIN pg_database d ON d.datname = a.datname
     WHERE a.datname = db AND a.pid <> pg_backend_pid()
       AND a.usename IN (current_setting('restore.owner'), pg_get_userbyid(d.datdba));
    SELECT string_agg(format('pid %s (user %s%s)', pid, usename, coalesce(', ' || nullif(application_name, ''), '')), ', ')
      INTO others FROM pg_stat_activity WHERE datname = db AND pid <> pg_backend_pid();
    EXIT WHEN others IS NULL;
    IF clock_timestamp() > deadline THEN
      RAISE EXCEPTION 'still in use by %', others;
    END IF;
    PERFORM pg_sleep(0.2);
  END LOOP;
END $$;
SQL
    "${PSQL[@]}" -d "$MAINT" -v db="$DST_DB" >/dev/null 2>&1 <<<'ALTER DATABASE :"db" ALLOW_CONNECTIONS true;' && BLOCKED=""
    why=$(err_of "$WORK/err"); why=${why#*ERROR: }
    locks=$(lock_report "$DST_DB")
    die 1 "$DST_DB is $why after $LOCK_TIMEOUT (lock_timeout)${locks:+; locks: $locks}; nothing swapped, $DST_DB open again, restored copy dropped"
  fi
  "${PSQL[@]}" -d "$MAINT" -v db="$DST_DB" -v aside="$ASIDE" -v before="$BEFORE" >/dev/null 2>"$WORK/err" <<'SQL' \
    || die 1 "cannot swap $ASIDE in for $DST_DB: $(err_of "$WORK/err")"
BEGIN;
ALTER DATABASE :"db" RENAME TO :"before";
ALTER DATABASE :"aside" RENAME TO :"db";
COMMIT;
SQL
  BLOCKED=""; ASIDE_MADE=""
  log "step=swap db=$DST_DB previous=$BEFORE seconds=$(since "$t")"
else
  "${PSQL[@]}" -d "$MAINT" -v db="$DST_DB" -v aside="$ASIDE" >/dev/null 2>"$WORK/err" <<<'ALTER DATABASE :"aside" RENAME TO :"db";' \
    || die 1 "cannot rename $ASIDE to $DST_DB: $(err_of "$WORK/err")"
  ASIDE_MADE=""
  log "step=swap db=$DST_DB previous=none seconds=$(since "$t")"
fi

OK_MESSAGE="run=$RUN database=$SRC_DB target=$DST_DB tables=$n_tables rows=$n_rows bytes=$DUMP_SIZE${TARGET_EXISTS:+ previous=$BEFORE} seconds=$(since "$T_RUN")"
