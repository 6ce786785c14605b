# shellcheck shell=bash
# Shared helpers of the WAL archiving and point-in-time recovery scripts. Sourced, never executed.
# They run in the official postgres image (bash, coreutils, gzip, PostgreSQL's own tools) plus the
# AWS CLI copied in by an init container: v2 in the pods, v1 or v2 in the tests. No jq, no python.

export AWS_PAGER=""
# The pods run the CLI copied from the pinned aws-cli image (AWS_CLI) and keep its state in a
# writable HOME (WAL_HOME): the containers' root filesystems are read-only.
[[ -z "${WAL_HOME:-}" ]] || export HOME=$WAL_HOME
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-15}"
PSQL=(psql -X -w -q -At -v ON_ERROR_STOP=1)
SCRIPT_NAME=$(basename "$0" .sh)

# Everything to stderr: for archive/restore commands that is the server log, for jobs the pod log.
exec 1>&2
log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$*"; }
# die CODE MESSAGE: one line with the reason, then exit with CODE.
die() { log "FAILED: $2"; exit "$1"; }
require_env() {
  local v
  for v in "$@"; do [[ -n "${!v:-}" ]] || die 2 "missing required environment variable $v"; done
}
now_us() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$((10#$t))"; }
since() { local ms=$((($(now_us) - $1) / 1000)); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }

# The CLI v2 only honours AWS_ENDPOINT_URL from 2.13 on: pass it explicitly (tests, S3-compatible stores).
aws_() {
  if [[ -n "${AWS_ENDPOINT_URL:-}" ]]; then "${AWS_CLI:-aws}" --endpoint-url "$AWS_ENDPOINT_URL" "$@"; else "${AWS_CLI:-aws}" "$@"; fi
}

# Server-side encryption of every object we write: SSE-KMS with the bucket's key, or SSE-S3.
sse_args() {
  require_env WAL_SSE
  case "$WAL_SSE" in
    AES256)
      [[ -z "${WAL_KMS_KEY_ID:-}" ]] || die 2 "WAL_KMS_KEY_ID is only valid with WAL_SSE=aws:kms"
      SSE=(--server-side-encryption AES256) ;;
    aws:kms)
      SSE=(--server-side-encryption aws:kms)
      [[ -z "${WAL_KMS_KEY_ID:-}" ]] || SSE+=(--ssekms-key-id "$WAL_KMS_KEY_ID") ;;
    *) die 2 "invalid WAL_SSE '$WAL_SSE' (expected aws:kms or AES256)" ;;
  esac
}

# What PostgreSQL archives: segments, timeline history files, backup history files, and the
# partial last segment of an old timeline.
WAL_NAME_RE='^([0-9A-F]{24}(\.partial|\.[0-9A-F]{8}\.backup)?|[0-9A-F]{8}\.history)$'

# Key of a WAL file in the archive: compressed, under the archive's own prefix.
wal_key() { printf '%s/%s.gz' "${WAL_PREFIX%/}" "$1"; }

# WAL file name of an LSN (hi/lo hex) on a timeline (decimal), for a segment size in bytes.
wal_file_name() {
  local tli=$1 lsn=$2 seg_size=$3
  local hi=$((16#${lsn%/*})) lo=$((16#${lsn#*/}))
  local segs_per_id=$((0x100000000 / seg_size))
  local segno=$(((hi * 0x100000000 + lo) / seg_size))
  printf '%08X%08X%08X' "$tli" $((segno / segs_per_id)) $((segno % segs_per_id))
}

# Arguments of `aws s3 cp` for the same encryption (its flags differ from s3api's).
sse_cp_args() {
  sse_args
  case "$WAL_SSE" in
    AES256) SSE_CP=(--sse AES256) ;;
    aws:kms) SSE_CP=(--sse aws:kms); [[ -z "${WAL_KMS_KEY_ID:-}" ]] || SSE_CP+=(--sse-kms-key-id "$WAL_KMS_KEY_ID") ;;
  esac
}

# Large streams: 64 MiB parts allow objects up to 640 GB without knowing the size in advance
# (the CLI's 8 MiB default stops at 80 GB).
big_upload_config() {
  local dir=$1
  printf '[default]\ns3 =\n  multipart_chunksize = 64MB\n  max_concurrent_requests = 4\n' >"$dir/aws-config"
  export AWS_CONFIG_FILE="$dir/aws-config"
}

# json_field FILE NAME: a string or number field of a JSON file this tool set wrote (one key a line).
json_field() { sed -n "s/^ *\"$2\": *\"\{0,1\}\([^\",]*\)\"\{0,1\},\{0,1\}$/\1/p" "$1" | head -n 1; }
