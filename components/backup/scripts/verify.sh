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
  elif [[ -n "$DIR" ]]; then rm -rf "$DIR/pgdata" "$DIR/scratch"; fi
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
T_RUN=$(now_us)

# --- throwaway server ----------------------------------------------------------
t=$(now_us)
initdb -D "$DATA" -U postgres -E UTF8 --no-locale --auth=trust >"$DIR/initdb.log" 2>&1 \
  || die 1 "initdb failed: $(tail -n3 "$DIR/initdb.log" | tr '\n' ' ')"
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
if [[ "$RUN" == latest ]]; then
  pointer=$(aws s3 cp "s3://$BACKUP_BUCKET/$BACKUP_PREFIX/latest.json" - --only-show-errors) \
    || die 1 "cannot read s3://$BACKUP_BUCKET/$BACKUP_PREFIX/latest.json"
  RUN=$(json_get postgres "$pointer" '{run_id}') || die 1 "latest.json is not valid JSON"
fi
if [[ -n "${VERIFY_DATABASES:-}" ]]; then
  read -r -a DBS <<<"$VERIFY_DATABASES"
else
  manifest=$(aws s3 cp "s3://$BACKUP_BUCKET/$BACKUP_PREFIX/runs/$RUN/manifest.json" - --only-show-errors) \
    || die 1 "cannot read manifest of run $RUN"
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
