#!/usr/bin/env bash
# PostgreSQL's archive_command: archive-wal.sh %p %f
# Uploads one WAL file to s3://$WAL_BUCKET/$WAL_PREFIX/<name>.gz, gzip-compressed, server-side
# encrypted, with the sha256 of the uncompressed file as object metadata (restore-wal.sh checks it).
# Exit 0 only when the archive holds exactly this file: uploaded now, or already there with the
# same sha256 (PostgreSQL retries a file whose earlier success it never saw). A different object
# under the name is never overwritten: that is a failure, and PostgreSQL keeps the WAL and retries
# (an operator must look: two servers archiving into one prefix, or tampering). Any error is
# non-zero, so PostgreSQL keeps the file in pg_wal until it is archived.
set -Eeuo pipefail
# shellcheck source=wal-lib.sh
. "$(dirname "$0")/wal-lib.sh"

(($# == 2)) || die 2 "usage: archive-wal.sh <path %p> <file name %f>"
SRC=$1
NAME=$2
require_env WAL_BUCKET WAL_PREFIX
sse_args
[[ "$NAME" =~ $WAL_NAME_RE ]] || die 2 "not a WAL file name: '$NAME'"
[[ -f "$SRC" ]] || die 1 "$SRC does not exist"
KEY=$(wal_key "$NAME")
T0=$(now_us)

WORK=$(mktemp -d "${TMPDIR:-/tmp}/archive-wal.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
SUM=$(sha256sum <"$SRC") || die 1 "cannot read $SRC"
SUM=${SUM%% *}
[[ "$SUM" =~ ^[0-9a-f]{64}$ ]] || die 1 "no sha256 for $SRC"

gzip -1 -c "$SRC" >"$WORK/wal.gz"
SIZE=$(stat -c %s "$WORK/wal.gz")

# put_wal [ARGS...]: PutObject of the compressed file; the CLI's stderr in $WORK/err.
put_wal() {
  aws_ s3api put-object --bucket "$WAL_BUCKET" --key "$KEY" --body "$WORK/wal.gz" \
      --content-type application/gzip --metadata "sha256=$SUM" "${SSE[@]}" \
      --checksum-algorithm SHA256 "$@" >/dev/null 2>"$WORK/err"
}

# settle_existing: exits 0 when the object under the name is this file, fails when it is another;
# returns 1 when there is none. HEAD needs s3:GetObject; a missing key reads as 404 (not 403)
# because the role may list the bucket.
settle_existing() {
  if aws_ s3api head-object --bucket "$WAL_BUCKET" --key "$KEY" --query 'Metadata.sha256' --output text \
       >"$WORK/head" 2>"$WORK/head.err"; then
    local there
    there=$(<"$WORK/head")
    if [[ "$there" == "$SUM" ]]; then
      log "$NAME already archived with the same sha256 ($SUM): ok"
      exit 0
    fi
    die 1 "s3://$WAL_BUCKET/$KEY exists with different content (sha256 ${there:-none}, ours $SUM): refusing to overwrite it"
  fi
  grep -qE '\(404\)|Not Found|NoSuchKey' "$WORK/head.err" \
    || die 1 "cannot check s3://$WAL_BUCKET/$KEY: $(tr '\n' ' ' <"$WORK/head.err")"
  return 1
}

# A CLI without conditional writes (before 2024), or a store that does not implement them, is
# remembered for the life of the container (in a directory only this user can write, keyed by
# the CLI's path and modification time): every later segment then costs one CLI start (~0.4 s
# of CPU) fewer.
cli=$(command -v "${AWS_CLI:-aws}" || true)
MARK_DIR="${TMPDIR:-/tmp}/archive-wal.$EUID"
mkdir -p -m 700 "$MARK_DIR" 2>/dev/null || true
[[ -d "$MARK_DIR" && -O "$MARK_DIR" && ! -L "$MARK_DIR" ]] || MARK_DIR=""
OLD_CLI_MARK="${MARK_DIR:+$MARK_DIR/no-if-none-match.$(printf '%s %s %s' "$cli" "$(stat -L -c %Y "$cli" 2>/dev/null)" "${AWS_ENDPOINT_URL:-}" | sha256sum | cut -c1-16)}"
if [[ -z "$OLD_CLI_MARK" || ! -e "$OLD_CLI_MARK" ]]; then
  # One request in the common case: the name is created only if it is free (If-None-Match), so no
  # two writers can both succeed and nothing is ever overwritten; a taken name is then compared.
  if put_wal --if-none-match '*'; then
    log "archived $NAME bytes=$SIZE seconds=$(since "$T0")"
    exit 0
  fi
  if grep -qE 'PreconditionFailed|\(412\)' "$WORK/err"; then
    settle_existing || die 1 "s3://$WAL_BUCKET/$KEY was taken, then gone again: will retry"
  fi
  # ConditionalRequestConflict (409): another conditional write of this name was in flight; PostgreSQL retries.
  grep -qE 'Unknown options?:.*--if-none-match|NotImplemented|\(501\)' "$WORK/err" \
    || die 1 "upload of $NAME to s3://$WAL_BUCKET/$KEY failed: $(tr '\n' ' ' <"$WORK/err")"
  if [[ -n "$OLD_CLI_MARK" ]]; then : >"$OLD_CLI_MARK" 2>/dev/null || true; fi
fi
# Look, then write. Two writers racing could both pass the look; versioning keeps the version the
# second one replaced.
settle_existing || true
put_wal || die 1 "upload of $NAME to s3://$WAL_BUCKET/$KEY failed: $(tr '\n' ' ' <"$WORK/err")"
log "archived $NAME bytes=$SIZE seconds=$(since "$T0") (no conditional write: this AWS CLI predates them, or the store does not implement them)"
