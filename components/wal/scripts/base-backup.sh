#!/usr/bin/env bash
# Base backup for point-in-time recovery: pg_basebackup (tar, streamed, gzip) straight to
# s3://$WAL_BUCKET/$BASE_BACKUP_PREFIX/<id>/base.tar.gz, then a manifest (start/stop LSN and time,
# timeline, WAL files, size, sha256, tool versions) as the last object: a backup without a manifest
# is incomplete and never used. WAL comes from the archive (-X none): pg_basebackup returns only
# once the server archived the last segment the backup needs, and we check it is in S3.
set -Eeuo pipefail
# shellcheck source=wal-lib.sh
. "$(dirname "$0")/wal-lib.sh"

require_env PGHOST PGUSER WAL_BUCKET WAL_PREFIX BASE_BACKUP_PREFIX
sse_cp_args
CHECKPOINT=${BASEBACKUP_CHECKPOINT:-spread}
[[ "$CHECKPOINT" == fast || "$CHECKPOINT" == spread ]] || die 2 "BASEBACKUP_CHECKPOINT must be fast or spread, not '$CHECKPOINT'"
ID=${BASEBACKUP_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')}
[[ "$ID" =~ ^[0-9A-Za-z_-]+$ ]] || die 2 "invalid BASEBACKUP_ID '$ID'"
DIR="${BASE_BACKUP_PREFIX%/}/$ID"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/base-backup.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
big_upload_config "$WORK"
T0=$(now_us)
log "id=$ID bucket=$WAL_BUCKET key=$DIR/base.tar.gz host=$PGHOST:${PGPORT:-5432} user=$PGUSER checkpoint=$CHECKPOINT"

REPL=(psql -X -w -At "dbname=replication replication=true")
SEG=$("${REPL[@]}" -c "SHOW wal_segment_size" 2>"$WORK/err") \
  || die 1 "cannot open a replication connection as $PGUSER: $(tr '\n' ' ' <"$WORK/err")"
case "$SEG" in
  *MB) SEG_BYTES=$((${SEG%MB} * 1024 * 1024)) ;;
  *GB) SEG_BYTES=$((${SEG%GB} * 1024 * 1024 * 1024)) ;;
  *) die 1 "unexpected wal_segment_size '$SEG'" ;;
esac
SERVER_VERSION=$("${REPL[@]}" -c "SHOW server_version")

# One pass: the tar stream is compressed, hashed, counted and uploaded; backup_label and
# backup_manifest are read out of it on the way.
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
set +e
pg_basebackup -D - -Ft -X none -c "$CHECKPOINT" -l "platform base backup $ID" -v 2>"$WORK/pgbb.err" \
  | tee >(tar -xOf - backup_label >"$WORK/label" 2>/dev/null) >(tar -xOf - backup_manifest >"$WORK/pgmanifest" 2>/dev/null) \
  | gzip -1 \
  | tee >(sha256sum >"$WORK/sum") >(wc -c >"$WORK/size") \
  | aws_ s3 cp - "s3://$WAL_BUCKET/$DIR/base.tar.gz" "${SSE_CP[@]}" --only-show-errors 2>"$WORK/up.err"
RCS=("${PIPESTATUS[@]}")
set -e
((RCS[0] == 0)) || die 1 "pg_basebackup failed (exit ${RCS[0]}): $(tail -n 3 "$WORK/pgbb.err" | tr '\n' ' ')"
((RCS[4] == 0)) || die 1 "upload to s3://$WAL_BUCKET/$DIR/base.tar.gz failed: $(tr '\n' ' ' <"$WORK/up.err")"
# Microseconds: a restore compares it with its target, and the backup is usable only after it.
FINISHED_AT=$(date -u +%Y-%m-%dT%H:%M:%S.%6NZ)
# The process substitutions finish a moment after the pipeline.
for _ in $(seq 1 100); do [[ -s "$WORK/sum" && -s "$WORK/size" && -s "$WORK/pgmanifest" ]] && break; sleep 0.1; done
SHA=$(cut -d' ' -f1 <"$WORK/sum")
SIZE=$(tr -d ' ' <"$WORK/size")
[[ "$SHA" =~ ^[0-9a-f]{64}$ && "$SIZE" =~ ^[0-9]+$ ]] || die 1 "could not measure the uploaded stream"

START_LSN=$(sed -n 's/^START WAL LOCATION: \([0-9A-F]*\/[0-9A-F]*\) .*/\1/p' "$WORK/label")
START_TIME=$(sed -n 's/^START TIME: //p' "$WORK/label")
TLI=$(sed -n 's/^START TIMELINE: //p' "$WORK/label")
STOP_LSN=$(grep -o '"End-LSN": "[0-9A-F]*/[0-9A-F]*"' "$WORK/pgmanifest" | tail -n 1 | sed 's/.*: "\(.*\)"/\1/')
[[ -n "$START_LSN" && -n "$STOP_LSN" && -n "$TLI" ]] || die 1 "backup_label or backup_manifest missing from the stream"
START_WAL=$(wal_file_name "$TLI" "$START_LSN" "$SEG_BYTES")
STOP_WAL=$(wal_file_name "$TLI" "$STOP_LSN" "$SEG_BYTES")

# The backup is usable only with every WAL file from START_WAL to STOP_WAL archived.
aws_ s3api head-object --bucket "$WAL_BUCKET" --key "$(wal_key "$STOP_WAL")" >/dev/null 2>"$WORK/err" \
  || die 1 "WAL file $STOP_WAL the backup ends in is not in the archive: $(tr '\n' ' ' <"$WORK/err")"

{
  printf '{\n'
  printf '  "id": "%s",\n' "$ID"
  printf '  "kind": "base",\n'
  printf '  "key": "%s",\n' "$DIR/base.tar.gz"
  printf '  "started_at": "%s",\n' "$STARTED_AT"
  printf '  "finished_at": "%s",\n' "$FINISHED_AT"
  printf '  "backup_start_time": "%s",\n' "$START_TIME"
  printf '  "timeline": %s,\n' "$TLI"
  printf '  "start_lsn": "%s",\n' "$START_LSN"
  printf '  "stop_lsn": "%s",\n' "$STOP_LSN"
  printf '  "start_wal": "%s",\n' "$START_WAL"
  printf '  "stop_wal": "%s",\n' "$STOP_WAL"
  printf '  "wal_segment_size": %s,\n' "$SEG_BYTES"
  printf '  "wal_prefix": "%s",\n' "${WAL_PREFIX%/}"
  printf '  "server_version": "%s",\n' "$SERVER_VERSION"
  printf '  "size_bytes": %s,\n' "$SIZE"
  printf '  "sha256": "%s",\n' "$SHA"
  printf '  "pg_basebackup": "%s",\n' "$(pg_basebackup --version)"
  printf '  "checkpoint": "%s"\n' "$CHECKPOINT"
  printf '}\n'
} >"$WORK/manifest.json"
aws_ s3api put-object --bucket "$WAL_BUCKET" --key "$DIR/manifest.json" --body "$WORK/manifest.json" \
    --content-type application/json "${SSE[@]}" --checksum-algorithm SHA256 >/dev/null 2>"$WORK/err" \
  || die 1 "manifest upload failed: $(tr '\n' ' ' <"$WORK/err")"
log "base-backup OK id=$ID start_lsn=$START_LSN stop_lsn=$STOP_LSN wal=$START_WAL..$STOP_WAL bytes=$SIZE seconds=$(since "$T0")"
