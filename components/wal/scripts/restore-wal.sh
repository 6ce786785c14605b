#!/usr/bin/env bash
# PostgreSQL's restore_command: restore-wal.sh %f %p
# Fetches <name>.gz from the WAL archive, checks the sha256 recorded when it was archived, and
# writes the file to %p. Exit codes follow what PostgreSQL makes of them:
#   1    the archive has no such file (404): normal, it is how recovery finds the end of the archive;
#   200  anything else (tampered or corrupt object, S3 unreachable after retries): a code above 125
#        makes PostgreSQL abort recovery (FATAL) instead of ending it early and promoting a server
#        that silently lacks the rest of the WAL.
set -Eeuo pipefail
# shellcheck source=wal-lib.sh
. "$(dirname "$0")/wal-lib.sh"

ABORT=200
(($# == 2)) || die $ABORT "usage: restore-wal.sh <file name %f> <path %p>"
NAME=$1
DEST=$2
require_env WAL_BUCKET WAL_PREFIX
[[ "$NAME" =~ $WAL_NAME_RE ]] || die $ABORT "not a WAL file name: '$NAME'"
KEY=$(wal_key "$NAME")
WORK=$(mktemp -d "${TMPDIR:-/tmp}/restore-wal.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

for attempt in 1 2 3; do
  if aws_ s3api get-object --bucket "$WAL_BUCKET" --key "$KEY" --query 'Metadata.sha256' --output text \
       "$WORK/wal.gz" >"$WORK/meta" 2>"$WORK/err"; then
    break
  fi
  if grep -qE 'NoSuchKey|\(404\)|Not Found' "$WORK/err"; then
    exit 1   # not archived (yet): PostgreSQL's normal end of recovery
  fi
  ((attempt < 3)) || die $ABORT "cannot fetch s3://$WAL_BUCKET/$KEY: $(tr '\n' ' ' <"$WORK/err")"
  sleep $((attempt * 2))
done

WANT=$(<"$WORK/meta")
[[ "$WANT" =~ ^[0-9a-f]{64}$ ]] || die $ABORT "s3://$WAL_BUCKET/$KEY has no sha256 metadata: not written by archive-wal.sh"
gzip -dc "$WORK/wal.gz" >"$WORK/wal" 2>"$WORK/err" || die $ABORT "s3://$WAL_BUCKET/$KEY is not valid gzip: $(tr '\n' ' ' <"$WORK/err")"
GOT=$(sha256sum <"$WORK/wal") && GOT=${GOT%% *}
[[ "$GOT" == "$WANT" ]] || die $ABORT "s3://$WAL_BUCKET/$KEY does not match its recorded sha256 (got $GOT, archived $WANT): tampered or corrupt"
mv "$WORK/wal" "$DEST"
log "restored $NAME"
