#!/usr/bin/env bash
# Weekly proof that point-in-time recovery works, beside the logical restore verify. On the live
# primary (as the replication role, CONNECT to postgres only): commit marker A, note the server's
# time T, commit marker B. Once B's WAL is in the archive, pitr-restore.sh restores to T into a
# throwaway directory (newest base backup, sha256 + pg_verifybackup, WAL replayed through
# restore-wal.sh), then a server on the result must show A committed and B not: the archive holds
# every WAL file from the base backup to T and replays to exactly T. Also fails when the newest
# base backup is older than VERIFY_MAX_BASE_BACKUP_AGE_HOURS (base backups stopped: the lifecycle
# rule would eventually expire the last one).
set -Eeuo pipefail
# shellcheck source=wal-lib.sh
. "$(dirname "$0")/wal-lib.sh"
SCRIPTS=$(cd "$(dirname "$0")" && pwd)

require_env PGHOST PGUSER WAL_BUCKET WAL_PREFIX BASE_BACKUP_PREFIX VERIFY_DATA_DIR VERIFY_MAX_BASE_BACKUP_AGE_HOURS
WAIT=${VERIFY_ARCHIVE_WAIT_SECONDS:-600}
T0=$(now_us)
WORK=$(mktemp -d "${VERIFY_DATA_DIR%/}/pitr-verify.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

q() { "${PSQL[@]}" -d postgres -c "$1" 2>"$WORK/err" || die 1 "query on $PGHOST failed: $(tr '\n' ' ' <"$WORK/err")"; }
# txid_current() assigns an id and its commit is a commit record with a timestamp: a marker any
# role may write, with no table and no data.
A=$(q "SELECT txid_current()")
sleep 1
T=$(q "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
sleep 1
B=$(q "SELECT txid_current()")
SEG=$(q "SELECT pg_walfile_name(pg_current_wal_lsn())")
log "markers: A=$A committed before T=$T, B=$B after it, in WAL file $SEG"

# B's segment is archived after at most archive_timeout plus the upload.
deadline=$((SECONDS + WAIT))
until aws_ s3api head-object --bucket "$WAL_BUCKET" --key "$(wal_key "$SEG")" >/dev/null 2>&1; do
  ((SECONDS < deadline)) || die 1 "WAL file $SEG not archived within ${WAIT}s: is archiving failing? (pg_stat_archiver on the primary)"
  sleep 2
done
log "step=archived file=$SEG seconds=$(since "$T0")"

# Freshness of the newest base backup.
NEWEST=$(aws_ s3api list-objects-v2 --bucket "$WAL_BUCKET" --prefix "${BASE_BACKUP_PREFIX%/}/" \
  --query "Contents[?ends_with(Key, '/manifest.json')].LastModified" --output text 2>"$WORK/err" | tr '\t' '\n' | grep -v '^None$' | sort | tail -n 1) \
  || die 1 "cannot list base backups: $(tr '\n' ' ' <"$WORK/err")"
[[ -n "$NEWEST" ]] || die 1 "no base backup in s3://$WAL_BUCKET/${BASE_BACKUP_PREFIX%/}/"
AGE_H=$(( ($(date +%s) - $(date -d "$NEWEST" +%s)) / 3600 ))
((AGE_H <= VERIFY_MAX_BASE_BACKUP_AGE_HOURS)) \
  || die 1 "the newest base backup is ${AGE_H}h old (limit ${VERIFY_MAX_BASE_BACKUP_AGE_HOURS}h): base backups have stopped"

unset PGHOST PGPORT PGUSER PGPASSWORD PGDATABASE
RESTORE_TARGET_TIME=$T RESTORE_MODE=throwaway RESTORE_DATA_DIR="$WORK/data" RESTORE_WORK_DIR="$WORK" RESTORE_HOLD_SECONDS=0 \
  "$SCRIPTS/pitr-restore.sh" || die 1 "point-in-time restore to $T failed (see the lines above)"

# Check the result with a server of our own on the restored directory.
PORT=${RESTORE_PORT:-5433}
printf 'local all all trust\n' >"$WORK/hba.conf"
printf "listen_addresses = ''\nport = %s\nunix_socket_directories = '%s'\nhba_file = '%s'\narchive_mode = off\nmax_connections = 20\n" \
  "$PORT" "$WORK" "$WORK/hba.conf" >"$WORK/check.conf"
pg_ctl start -D "$WORK/data" -o "-c config_file=$WORK/check.conf" -l "$WORK/check.log" -w -t 300 >/dev/null \
  || die 1 "the restored server does not start: $(tail -n 3 "$WORK/check.log" | tr '\n' ' ')"
STATUS_A=$(PGHOST=$WORK PGPORT=$PORT PGUSER=${RESTORE_DB_USER:-postgres} "${PSQL[@]}" -d postgres -c "SELECT txid_status($A)" 2>&1) || STATUS_A="error: $STATUS_A"
STATUS_B=$(PGHOST=$WORK PGPORT=$PORT PGUSER=${RESTORE_DB_USER:-postgres} "${PSQL[@]}" -d postgres -c "SELECT coalesce(txid_status($B), 'unknown')" 2>&1) || STATUS_B="not yet assigned"
pg_ctl stop -D "$WORK/data" -m fast -w >/dev/null 2>&1 || true
[[ "$STATUS_A" == committed ]] || die 1 "marker A ($A, committed before $T) is '$STATUS_A' after the restore: WAL before the target is missing"
[[ "$STATUS_B" != committed ]] || die 1 "marker B ($B, committed after $T) is committed after the restore: recovery went past its target"
log "pitr-verify OK target=$T marker_before=committed marker_after=$STATUS_B newest_base_backup_age_hours=$AGE_H seconds=$(since "$T0")"
