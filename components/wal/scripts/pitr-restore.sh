#!/usr/bin/env bash
# Point-in-time restore: the newest base backup finished before RESTORE_TARGET_TIME (RFC 3339, or
# "latest"), checked against its manifest (sha256, then pg_verifybackup), then archived WAL replayed
# up to the target by a temporary server (restore-wal.sh checks every file), which is promoted and
# stopped cleanly. Modes:
#   throwaway  RESTORE_DATA_DIR is a new, empty directory (inspection, export, the weekly verify);
#              RESTORE_HOLD_SECONDS keeps the promoted server up for that long (socket in RESTORE_WORK_DIR).
#   in-place   RESTORE_DATA_DIR is the StatefulSet's data directory (the pod scaled to 0): the
#              current one is renamed to <dir>.before-<stamp> for rollback, never deleted.
# A tampered or missing WAL file or base backup fails the restore loudly; nothing is promoted then.
set -Eeuo pipefail
# shellcheck source=wal-lib.sh
. "$(dirname "$0")/wal-lib.sh"
SCRIPTS=$(cd "$(dirname "$0")" && pwd)

require_env WAL_BUCKET WAL_PREFIX BASE_BACKUP_PREFIX RESTORE_TARGET_TIME RESTORE_MODE RESTORE_DATA_DIR RESTORE_WORK_DIR
TARGET=$RESTORE_TARGET_TIME
MODE=$RESTORE_MODE
DATA=${RESTORE_DATA_DIR%/}
[[ "$MODE" == throwaway || "$MODE" == in-place ]] || die 2 "RESTORE_MODE must be throwaway or in-place, not '$MODE'"
if [[ "$TARGET" == latest ]]; then
  TARGET_US=$(( ($(date +%s) + 3600) * 1000000 ))
else
  [[ "$TARGET" =~ ^[0-9]{4}-[0-9]{2}-[0-9]{2}[T\ ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:?[0-9]{2})$ ]] \
    || die 2 "RESTORE_TARGET_TIME '$TARGET' is not an RFC 3339 time with a zone (e.g. 2026-11-24T06:30:00Z) or 'latest'"
  TARGET_US=$(date -d "$TARGET" +%s%6N) || die 2 "RESTORE_TARGET_TIME '$TARGET' is not a valid time"
fi
WORK=$(mktemp -d "${RESTORE_WORK_DIR%/}/pitr.XXXXXX")
PORT=${RESTORE_PORT:-5433}
STARTED=""
cleanup() {
  local rc=$?
  if [[ -n "$STARTED" ]]; then pg_ctl stop -D "$DATA" -m fast -w -t 120 >/dev/null 2>&1 || pg_ctl stop -D "$DATA" -m immediate >/dev/null 2>&1; fi
  # Keep the server log of a failed restore next to the data; the downloads go.
  [[ $rc -ne 0 && -f "$WORK/server.log" ]] && cp "$WORK/server.log" "${RESTORE_WORK_DIR%/}/pitr-failed-server.log" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'die 143 "terminated by signal"' TERM INT
T0=$(now_us)
log "target=$TARGET mode=$MODE data=$DATA bucket=$WAL_BUCKET"

# 1. The newest base backup that finished before the target (ids sort by start time).
aws_ s3api list-objects-v2 --bucket "$WAL_BUCKET" --prefix "${BASE_BACKUP_PREFIX%/}/" \
    --query "Contents[?ends_with(Key, '/manifest.json')].Key" --output text >"$WORK/keys" 2>"$WORK/err" \
  || die 1 "cannot list base backups: $(tr '\n' ' ' <"$WORK/err")"
mapfile -t KEYS < <(tr '\t' '\n' <"$WORK/keys" | grep -v '^None$' | grep . | sort -r)
((${#KEYS[@]} > 0)) || die 1 "no base backup in s3://$WAL_BUCKET/${BASE_BACKUP_PREFIX%/}/"
CHOSEN=""
EARLIEST=""
for k in "${KEYS[@]}"; do
  aws_ s3 cp "s3://$WAL_BUCKET/$k" "$WORK/manifest.json" --only-show-errors 2>"$WORK/err" \
    || die 1 "cannot read $k: $(tr '\n' ' ' <"$WORK/err")"
  FIN=$(json_field "$WORK/manifest.json" finished_at)
  EARLIEST=$FIN
  if (( 10#$(date -d "$FIN" +%s%6N) < TARGET_US )); then CHOSEN=$k; break; fi
done
[[ -n "$CHOSEN" ]] || die 1 "no base backup finished before $TARGET: the earliest restorable time is after $EARLIEST"
ID=$(json_field "$WORK/manifest.json" id)
KEY=$(json_field "$WORK/manifest.json" key)
WANT_SHA=$(json_field "$WORK/manifest.json" sha256)
WANT_SIZE=$(json_field "$WORK/manifest.json" size_bytes)
log "step=choose base_backup=$ID finished_at=$(json_field "$WORK/manifest.json" finished_at) stop_lsn=$(json_field "$WORK/manifest.json" stop_lsn)"

# 2. Download and check before a single file is extracted.
t=$(now_us)
aws_ s3 cp "s3://$WAL_BUCKET/$KEY" "$WORK/base.tar.gz" --only-show-errors 2>"$WORK/err" \
  || die 1 "cannot download s3://$WAL_BUCKET/$KEY: $(tr '\n' ' ' <"$WORK/err")"
GOT_SIZE=$(stat -c %s "$WORK/base.tar.gz")
GOT_SHA=$(sha256sum "$WORK/base.tar.gz" | cut -d' ' -f1)
[[ "$GOT_SIZE" == "$WANT_SIZE" && "$GOT_SHA" == "$WANT_SHA" ]] \
  || die 1 "base backup $ID does not match its manifest (size $GOT_SIZE/$WANT_SIZE, sha256 $GOT_SHA/$WANT_SHA): tampered or corrupt, not restored"
log "step=download bytes=$GOT_SIZE sha256=ok seconds=$(since "$t")"

# 3. The data directory: a new one, or the old one set aside (same volume: a rename).
if [[ "$MODE" == in-place ]]; then
  if [[ -f "$DATA/postmaster.pid" && "${RESTORE_FORCE:-no}" != yes ]]; then
    die 1 "$DATA/postmaster.pid exists: is the server still running? Scale the StatefulSet to 0 first (RESTORE_FORCE=yes if it crashed)"
  fi
  if [[ -e "$DATA" ]]; then
    ASIDE="$DATA.before-$(date -u +%Y%m%dT%H%M%SZ)"
    mv "$DATA" "$ASIDE"
    log "step=set-aside old=$ASIDE (rollback: move it back; delete it once the restore is accepted)"
  fi
else
  [[ ! -e "$DATA" || -z "$(ls -A "$DATA" 2>/dev/null)" ]] || die 2 "$DATA is not empty: a throwaway restore needs a new directory"
fi
mkdir -p "$DATA"
chmod 700 "$DATA"
t=$(now_us)
tar -xzf "$WORK/base.tar.gz" -C "$DATA" || die 1 "cannot extract the base backup into $DATA"
rm -f "$WORK/base.tar.gz"
pg_verifybackup -n -q "$DATA" 2>"$WORK/err" || die 1 "pg_verifybackup rejects base backup $ID: $(tr '\n' ' ' <"$WORK/err")"
log "step=extract verified=pg_verifybackup seconds=$(since "$t")"

# 4. Recovery by a temporary server: its settings on the command line only, so nothing of the
#    restore stays in the data directory for the pod's own server.
touch "$DATA/recovery.signal"
rm -f "$DATA/postmaster.pid" "$DATA/postmaster.opts"
printf 'local all all trust\n' >"$WORK/hba.conf"
{
  printf "listen_addresses = ''\nport = %s\nunix_socket_directories = '%s'\nhba_file = '%s'\n" "$PORT" "$WORK" "$WORK/hba.conf"
  # No read-only connections during recovery: hot standby would demand max_connections and friends
  # at least as high as the source server's.
  printf "hot_standby = off\nmax_connections = 20\nshared_buffers = '128MB'\n"
  printf "restore_command = '%s/restore-wal.sh %%f %%p'\n" "$SCRIPTS"
  printf "recovery_target_timeline = 'latest'\nrecovery_target_action = 'promote'\n"
  # A numeric UTC offset: the server parses this before it knows zone abbreviations such as "Z".
  [[ "$TARGET" == latest ]] || printf "recovery_target_time = '%s'\n" "$(date -u -d "$TARGET" '+%Y-%m-%d %H:%M:%S.%6N+00')"
  # The promoted server's new WAL is left for the pod's own archiver (marked .ready, not sent):
  # this job may not write to the archive.
  printf "archive_mode = on\narchive_command = 'false'\narchive_timeout = 0\n"
} >"$WORK/restore.conf"
t=$(now_us)
STARTED=yes
pg_ctl start -D "$DATA" -o "-c config_file=$WORK/restore.conf" -l "$WORK/server.log" -w -t 3600 >/dev/null 2>&1 || true
export PGHOST=$WORK PGPORT=$PORT PGDATABASE=postgres
unset PGUSER PGPASSWORD
PGUSER=${RESTORE_DB_USER:-postgres}
export PGUSER
until [[ "$("${PSQL[@]}" -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" == f ]]; do
  if ! pg_ctl status -D "$DATA" >/dev/null 2>&1; then
    STARTED=""
    die 1 "recovery failed: $(grep -E 'FATAL|PANIC|restore-wal: FAILED|syntax error|invalid value|unrecognized' "$WORK/server.log" | tail -n 3 | tr '\n' ' ')"
  fi
  sleep 0.5
done
REPLAYED=$("${PSQL[@]}" -c "SELECT coalesce(pg_last_xact_replay_timestamp()::text, 'none')")
TIMELINE=$("${PSQL[@]}" -c "SELECT timeline_id FROM pg_control_checkpoint()")
log "step=recover replayed_until='$REPLAYED' timeline=$TIMELINE seconds=$(since "$t")"

if ((${RESTORE_HOLD_SECONDS:-0} > 0)); then
  log "holding the restored server for ${RESTORE_HOLD_SECONDS}s: kubectl exec into this pod, then psql -h $WORK -p $PORT -U $PGUSER"
  sleep "$RESTORE_HOLD_SECONDS" & wait $!
fi
pg_ctl stop -D "$DATA" -m fast -w -t 300 >/dev/null 2>&1 || die 1 "the restored server did not stop cleanly"
STARTED=""
rm -f "$DATA/backup_manifest"
log "pitr-restore OK base_backup=$ID target=$TARGET replayed_until='$REPLAYED' timeline=$TIMELINE mode=$MODE seconds=$(since "$T0")"
