#!/usr/bin/env bash
# Scheduled restore test: start a throwaway PostgreSQL inside this pod (unix
# socket only, in a private directory), restore the latest backup into it
# with restore.sh (globals first), compare row counts, stop it.
# A backup is only as good as its last successful restore.
set -Eeuo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

DIR=""; DATA=""; OWN_DIR=""; STARTED=""
cleanup() {
  if [[ -n "$STARTED" ]]; then
    pg_ctl -D "$DATA" -m immediate -w stop >/dev/null 2>&1 || log "WARNING: could not stop throwaway server"
  fi
  if ((EXIT_CODE != 0)) && [[ -f "$DIR/server.log" ]]; then
    log "throwaway server log (tail):"; tail -n 20 "$DIR/server.log" >&2
  fi
  if [[ -n "$OWN_DIR" ]]; then rm -rf "$OWN_DIR"
  elif [[ -n "$DIR" ]]; then rm -rf "$DIR/pgdata" "$DIR/scratch" "$DIR/latest.json" "$DIR/manifest.json" "$DIR/s3.err" "$DIR/aws-config"; fi
}
install_traps

require_env BACKUP_BUCKET BACKUP_PREFIX AWS_REGION
BACKUP_PREFIX=${BACKUP_PREFIX%/}
if [[ -n "${VERIFY_DATA_DIR:-}" ]]; then
  DIR=$VERIFY_DATA_DIR
  [[ -d "$DIR" && -w "$DIR" ]] || die 2 "invalid VERIFY_DATA_DIR '$DIR': not a writable directory"
  # Leftovers from an earlier (killed) run would make initdb refuse.
  rm -rf "${DIR:?}/pgdata" "${DIR:?}/scratch" "${DIR:?}/server.log"
else
  DIR=$(mktemp -d); OWN_DIR=$DIR
fi
DATA="$DIR/pgdata"
aws_config "$DIR"
T_RUN=$(now_us)

# --- throwaway server ----------------------------------------------------------
t=$(now_us)
if ! initdb -D "$DATA" -U postgres -E UTF8 --no-locale --auth=trust >"$DIR/initdb.log" 2>&1; then
  # The cause ("No space left on device", "Permission denied") is in an error
  # line, followed by initdb's own clean-up lines: show the error lines.
  cause=$(grep -iE 'error|fatal|could not|no space|denied' "$DIR/initdb.log" | head -n3 | tr -s '\n ' '  ' || true)
  die 1 "initdb failed: ${cause:-$(tail -n3 "$DIR/initdb.log" | tr -s '\n ' '  ')}"
fi
# No TCP at all; the socket lives in the 0700 data directory. Durability is
# pointless for a server we delete in a minute.
STARTED=yes
pg_ctl -D "$DATA" -l "$DIR/server.log" -w -t 120 start -o \
  "-c listen_addresses='' -c unix_socket_directories='$DATA' -p 5432 -c fsync=off -c full_page_writes=off -c synchronous_commit=off" \
  >/dev/null || die 1 "throwaway server did not start: $(tail -n3 "$DIR/server.log" | tr '\n' ' ')"
log "step=start-server dir=$DATA seconds=$(since "$t")"

# Point libpq at the throwaway server only.
unset PGHOSTADDR PGSERVICE PGPASSFILE PGPASSWORD PGSSLMODE PGOPTIONS
export PGHOST="$DATA" PGPORT=5432 PGUSER=postgres PGDATABASE=postgres

# Resolve "latest" once, so every database comes from the same run.
RUN=${RESTORE_RUN_ID:-latest}
# s3_read KEY FILE WHAT: download a small object, or die saying what is missing.
s3_read() {
  aws s3 cp "s3://$BACKUP_BUCKET/$1" "$2" --only-show-errors 2>"$DIR/s3.err" && return 0
  if grep -qE 'NoSuchKey|Not Found|\(404\)|does not exist' "$DIR/s3.err"; then
    die 1 "$3 (s3://$BACKUP_BUCKET/$1 does not exist)"
  fi
  die 1 "cannot read s3://$BACKUP_BUCKET/$1: $(err_of "$DIR/s3.err")"
}
if [[ "$RUN" == latest ]]; then
  s3_read "$BACKUP_PREFIX/latest.json" "$DIR/latest.json" "no latest.json: no backup run has completed in this bucket and prefix yet"
  RUN=$(json_get postgres "$(<"$DIR/latest.json")" '{run_id}') || die 1 "latest.json is not valid JSON"
fi
if [[ -n "${VERIFY_DATABASES:-}" ]]; then
  read -r -a DBS <<<"$VERIFY_DATABASES"
else
  s3_read "$BACKUP_PREFIX/runs/$RUN/manifest.json" "$DIR/manifest.json" "backup run $RUN has no manifest: it never completed, or it was deleted"
  manifest=$(<"$DIR/manifest.json")
  mapfile -t DBS < <("${PSQL[@]}" -v m="$manifest" <<<"SELECT jsonb_path_query(:'m'::jsonb, '\$.databases[*].name') #>> '{}'")
fi
((${#DBS[@]} > 0)) || die 1 "no databases to verify in run $RUN"

# --- restore each database (globals with the first) ------------------------------
globals=true
for db in "${DBS[@]}"; do
  t=$(now_us)
  RESTORE_RUN_ID="$RUN" RESTORE_DATABASE="$db" RESTORE_TARGET_DATABASE="$db" RESTORE_GLOBALS="$globals" \
    RESTORE_SCRATCH_DIR="$DIR/scratch" bash "$HERE/restore.sh" \
    || die "$?" "restore of database $db from run $RUN failed (see the restore FAILED line above)"
  globals=false
  log "step=verify db=$db seconds=$(since "$t")"
done

OK_MESSAGE="run=$RUN databases=${#DBS[@]} (${DBS[*]}) seconds=$(since "$T_RUN")"
