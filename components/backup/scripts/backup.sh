#!/usr/bin/env bash
# Logical backup of PostgreSQL to S3: pg_dump -Fc per database + globals,
# streamed (no local copy) straight to their final keys under a run prefix
# that this run claimed, checksummed on the fly. The manifest is the commit
# point: a run exists only once runs/<id>/manifest.json is written, readers
# never trust a run without one, and latest.json then moves to this run only
# if it holds a newer snapshot than the run latest.json names.
# See the README section "Backups".
set -Eeuo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

CREATED=()     # keys this run created under its claimed prefix: deleted if it fails
COMMITTED=""   # set once the manifest is written: from then on the run is never deleted
SNAP_HOLDER="" # psql coprocess holding the exported snapshot
WORK=""

cleanup() {
  [[ -n "$SNAP_HOLDER" ]] && kill "$SNAP_HOLDER" 2>/dev/null
  # Stray background readers (sha256sum/wc, row counts) of an aborted pipeline.
  local j; for j in $(jobs -p); do kill "$j" 2>/dev/null; done
  if ((EXIT_CODE != 0)) && [[ -z "$COMMITTED" ]] && ((${#CREATED[@]} > 0)); then
    # Best effort, one request; whatever survives expires with the runs/
    # lifecycle rule and is never read: it has no manifest. Only keys this
    # process wrote, all under the prefix its claim made its own.
    local objs k
    objs=$(for k in "${CREATED[@]}"; do printf '{"Key": %s},' "$(json_str "$k")"; done)
    aws s3api delete-objects --bucket "$BACKUP_BUCKET" --delete "{\"Objects\": [${objs%,}], \"Quiet\": true}" \
      >/dev/null 2>&1 || log "WARNING: could not delete this failed run's objects under $FINAL/ (they expire by lifecycle)"
  fi
  [[ -n "$WORK" ]] && rm -rf "$WORK"
}
install_traps

require_env PGHOST PGUSER BACKUP_BUCKET BACKUP_PREFIX BACKUP_DATABASES BACKUP_SSE AWS_REGION
set_timeouts
case "$BACKUP_SSE" in
  AES256)
    [[ -z "${BACKUP_KMS_KEY_ID:-}" ]] || die 2 "BACKUP_KMS_KEY_ID is only valid with BACKUP_SSE=aws:kms"
    SSE_CP=(--sse AES256); SSE_API=(--server-side-encryption AES256) ;;
  aws:kms)
    SSE_CP=(--sse aws:kms); SSE_API=(--server-side-encryption aws:kms)
    if [[ -n "${BACKUP_KMS_KEY_ID:-}" ]]; then
      SSE_CP+=(--sse-kms-key-id "$BACKUP_KMS_KEY_ID"); SSE_API+=(--ssekms-key-id "$BACKUP_KMS_KEY_ID")
    fi ;;
  *) die 2 "invalid BACKUP_SSE '$BACKUP_SSE' (expected aws:kms or AES256)" ;;
esac
BACKUP_PREFIX=${BACKUP_PREFIX%/}
# One-second timestamps collide (`kubectl create job --from` ignores the
# CronJob's concurrencyPolicy): a random suffix makes ids unique, and the
# claim below refuses an id that is taken anyway.
RUN_ID=${BACKUP_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')}
[[ "$RUN_ID" =~ ^[0-9A-Za-z_][0-9A-Za-z_.-]{0,63}$ ]] \
  || die 2 "invalid BACKUP_RUN_ID '$RUN_ID' (letters, digits, _ . -; not starting with a dot; at most 64)"
FINAL="$BACKUP_PREFIX/runs/$RUN_ID"
LATEST_KEY="$BACKUP_PREFIX/latest.json"
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T_RUN=$(now_us)
MAINT_DB=${PGDATABASE:-postgres}
WORK=$(mktemp -d)
aws_config "$WORK"

log "run=$RUN_ID bucket=$BACKUP_BUCKET prefix=$BACKUP_PREFIX sse=$BACKUP_SSE host=${PGHOST}:${PGPORT:-5432} user=$PGUSER lock_timeout=$LOCK_TIMEOUT statement_timeout=$STATEMENT_TIMEOUT"

# --- S3 helpers ---------------------------------------------------------------------
# Conditional writes (If-None-Match / If-Match) need a CLI from 2024 on (the
# pods' v2.31 has them); without them the claim and latest.json fall back to
# read-and-compare, which has a race window.
CONDITIONAL=yes
# s3_put KEY FILE CONTENT_TYPE [PUT-OBJECT ARGS...]: one PutObject; stderr in
# $WORK/put.err. The explicit checksum also satisfies buckets with Object Lock
# default retention, which refuse uploads without one.
s3_put() {
  local key=$1 file=$2 ctype=$3; shift 3
  aws s3api put-object --bucket "$BACKUP_BUCKET" --key "$key" --body "$file" --content-type "$ctype" \
    --checksum-algorithm CRC32 "${SSE_API[@]}" "$@" >/dev/null 2>"$WORK/put.err"
}
put_refused() { grep -qE 'PreconditionFailed|\(412\)|ConditionalRequestConflict|NoSuchKey' "$WORK/put.err"; }
no_conditional_cli() { grep -qE 'Unknown options?:.*--if-(none-)?match' "$WORK/put.err"; }

# start_reading_latest / read_latest_done: latest.json's body ($WORK/latest.cur) and ETag
# ($WORK/latest.etag), read by the CLI in the background (itself a job, so cleanup's kill reaches
# it); LATEST_RC is then 0 (read), 1 (error) or 2 (no latest.json yet).
start_reading_latest() {
  rm -f "$WORK/latest.cur"
  aws s3api get-object --bucket "$BACKUP_BUCKET" --key "$LATEST_KEY" --query ETag --output text \
    "$WORK/latest.cur" >"$WORK/latest.etag" 2>"$WORK/latest.err" &
  LATEST_READER=$!
}
read_latest_done() {
  LATEST_RC=0
  wait "$LATEST_READER" || LATEST_RC=1
  if ((LATEST_RC == 1)) && grep -qE 'NoSuchKey|Not Found|\(404\)' "$WORK/latest.err"; then LATEST_RC=2; fi
}
read_latest() { start_reading_latest; read_latest_done; }

# --- connect ---------------------------------------------------------------------------
t=$(now_us)
info=$("${PSQL[@]}" -d "$(db_conn "$MAINT_DB")" -c "SELECT current_setting('server_version') || '|' || current_user" 2>"$WORK/err") \
  || die 1 "cannot connect to PostgreSQL at ${PGHOST}:${PGPORT:-5432} as $PGUSER: $(err_of "$WORK/err")"
SERVER_VERSION=${info%%|*}; DUMPED_BY=${info#*|}
PG_DUMP_MAJOR=$(pg_major pg_dump) || die 1 "cannot run pg_dump --version"
COMPRESS=$(dump_compression "$PG_DUMP_MAJOR")
log "step=connect server_version=$SERVER_VERSION pg_dump=$PG_DUMP_MAJOR compression=$(compression_name "$COMPRESS") seconds=$(since "$t")"

if [[ "$BACKUP_DATABASES" == all ]]; then
  out=$("${PSQL[@]}" -d "$(db_conn "$MAINT_DB")" -c \
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1") \
    || die 1 "cannot list databases"
  mapfile -t DBS <<<"$out"
else
  read -r -a DBS <<<"$BACKUP_DATABASES"
  for db in "${DBS[@]}"; do
    ok=$("${PSQL[@]}" -d "$(db_conn "$MAINT_DB")" -v db="$db" <<<"SELECT count(*) FROM pg_database WHERE datname = :'db' AND datallowconn")
    [[ "$ok" == 1 ]] || die 2 "invalid BACKUP_DATABASES: database '$db' does not exist or does not allow connections"
  done
fi
((${#DBS[@]} > 0)) || die 2 "invalid BACKUP_DATABASES: no databases to back up"

# --- globals, which also claim the run prefix -------------------------------------------
# --no-role-passwords: the backup role cannot read pg_authid. Passwords are
# re-set from the Kubernetes Secrets after a restore (init-db.sh / restore docs).
# Written with If-None-Match: * as the run's first object, so it doubles as
# the bucket check and as the claim: a second run with the same id gets 412
# and writes (and deletes) nothing.
t=$(now_us)
pg_dumpall --globals-only --no-role-passwords -l "$MAINT_DB" >"$WORK/globals.sql" 2>"$WORK/err" \
  || die 1 "pg_dumpall --globals-only failed: $(err_of "$WORK/err")"
G_BYTES=$(stat -c %s "$WORK/globals.sql"); G_SHA=$(sha256sum "$WORK/globals.sql" | cut -d' ' -f1)
claim() {
  local key="$FINAL/globals.sql" first
  if s3_put "$key" "$WORK/globals.sql" text/plain --if-none-match '*'; then CREATED+=("$key"); return; fi
  if put_refused; then
    die 1 "run $RUN_ID already exists (s3://$BACKUP_BUCKET/$FINAL/ is taken); refusing to write into it"
  fi
  no_conditional_cli || die 1 "S3 bucket $BACKUP_BUCKET not reachable: $(err_of "$WORK/put.err")"
  CONDITIONAL=""
  log "WARNING: this AWS CLI has no conditional writes; checking the run prefix with a LIST (racy)"
  first=$(aws s3api list-objects-v2 --bucket "$BACKUP_BUCKET" --prefix "$FINAL/" --max-items 1 \
    --query 'Contents[0].Key' --output text 2>"$WORK/err") \
    || die 1 "S3 bucket $BACKUP_BUCKET not reachable: $(err_of "$WORK/err")"
  [[ "$first" == None || -z "$first" ]] \
    || die 1 "run $RUN_ID already exists (s3://$BACKUP_BUCKET/$FINAL/ is taken); refusing to write into it"
  s3_put "$key" "$WORK/globals.sql" text/plain \
    || die 1 "S3 bucket $BACKUP_BUCKET not reachable: $(err_of "$WORK/put.err")"
  CREATED+=("$key")
}
claim
# The CLI's version for the manifest, from the v2 installer's directory layout
# (the pods' CLI): `aws --version` would be one more CLI start (~0.4 s of CPU).
aws_path=$(readlink -f "$(command -v aws)" 2>/dev/null || true)
if [[ "$aws_path" =~ /v2/([0-9]+\.[0-9]+\.[0-9]+)/ ]]; then
  AWS_VERSION="aws-cli/${BASH_REMATCH[1]}"
else
  AWS_VERSION="aws-cli (version not recorded; ${aws_path:-aws})"
fi
GLOBALS=$(printf '{"key": %s, "size_bytes": %s, "sha256": "%s"}' "$(json_str "$FINAL/globals.sql")" "$G_BYTES" "$G_SHA")
log "step=globals bytes=$G_BYTES claimed=s3://$BACKUP_BUCKET/$FINAL/ seconds=$(since "$t")"
STREAMED_JSON=("$(printf '{"k": %s, "n": %s}' "$(json_str "$FINAL/globals.sql")" "$G_BYTES")")

# stream_to_s3 KEY EXPECTED_SIZE CMD...: run CMD, stream its stdout to KEY
# while sha256sum and wc read a copy through fifos (nothing is buffered in
# memory or on disk). Sets OUT_BYTES and OUT_SHA; CMD's stderr is in
# $WORK/cmd.err. `aws s3 cp -` completes the upload on EOF even when CMD
# died, so every pipeline member's status is checked; an object of a failed
# stream has no manifest and is deleted by cleanup.
stream_to_s3() {
  local key=$1 size=$2; shift 2
  local shaf="$WORK/sha.fifo" cntf="$WORK/cnt.fifo" st pst sha_pid cnt_pid sha_rc=0 cnt_rc=0
  rm -f "$shaf" "$cntf"; mkfifo "$shaf" "$cntf"
  sha256sum <"$shaf" >"$WORK/sha" & sha_pid=$!
  wc -c <"$cntf" >"$WORK/cnt" & cnt_pid=$!
  CREATED+=("$key")
  "$@" 2>"$WORK/cmd.err" | tee "$shaf" "$cntf" \
    | aws s3 cp - "s3://$BACKUP_BUCKET/$key" --only-show-errors --expected-size "$size" "${SSE_CP[@]}" 2>"$WORK/up.err" \
    && pst=("${PIPESTATUS[@]}") || pst=("${PIPESTATUS[@]}")
  wait "$sha_pid" || sha_rc=$?
  wait "$cnt_pid" || cnt_rc=$?
  st="$1=${pst[0]} tee=${pst[1]} aws-upload=${pst[2]} sha256sum=$sha_rc wc=$cnt_rc"
  if ! [[ "${pst[*]} $sha_rc $cnt_rc" =~ ^[0\ ]+$ ]]; then
    local why; why=$(lock_reason "$db" "$WORK/cmd.err")
    die 1 "stream of $key failed ($st)${why:+: $why}$([[ -s "$WORK/up.err" ]] && printf '; upload: %s' "$(err_of "$WORK/up.err")")"
  fi
  OUT_BYTES=$(<"$WORK/cnt"); OUT_SHA=$(cut -d' ' -f1 <"$WORK/sha")
  [[ "$OUT_BYTES" =~ ^[0-9]+$ ]] && ((OUT_BYTES > 0)) || die 1 "stream of $key produced no data ($st)"
  [[ "$OUT_SHA" =~ ^[0-9a-f]{64}$ ]] || die 1 "no sha256 for $key"
  STREAMED_JSON+=("$(printf '{"k": %s, "n": %s}' "$(json_str "$key")" "$OUT_BYTES")")
}

# to_coproc LINE...: write to the snapshot psql. If it already died, a plain
# write would kill this script with SIGPIPE (no status line); ignoring PIPE
# just for this builtin turns that into an error return. (A subshell cannot be
# used: bash closes coproc fds in subshells.)
to_coproc() {
  local rc=0
  trap '' PIPE
  printf '%s\n' "$@" >&"$snap_in" 2>/dev/null || rc=$?
  trap - PIPE
  return "$rc"
}

# --- databases ---------------------------------------------------------------
DB_JSON=()
TOTAL_BYTES=$G_BYTES
RUN_SNAPSHOT_AT=""   # the run's oldest snapshot: what latest.json compares
for db in "${DBS[@]}"; do
  t=$(now_us)
  # Hold a REPEATABLE READ transaction open and export its snapshot so the row
  # counts in the manifest describe exactly the data pg_dump writes. The
  # server's clock at that moment orders runs (one clock for every run).
  coproc SNAP { exec "${PSQL[@]}" -d "$(db_conn "$db")" 2>&1; }
  SNAP_HOLDER=$!
  snap_in=${SNAP[1]:-}; snap_out=${SNAP[0]:-}
  line=""
  if [[ -n "$snap_in" ]] && to_coproc 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;' \
      $'SELECT pg_export_snapshot() || \' \' || to_char(clock_timestamp() AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.US"Z"\');'; then
    read -r -t 60 line <&"$snap_out" || true
  fi
  read -r snapshot snap_at <<<"$line"
  [[ "$snapshot" =~ ^[0-9A-F]+-[0-9A-F]+-[0-9]+$ ]] || die 1 "cannot export snapshot in database $db: ${line:-no answer}"
  [[ -z "$RUN_SNAPSHOT_AT" || "$snap_at" < "$RUN_SNAPSHOT_AT" ]] && RUN_SNAPSHOT_AT=$snap_at

  # Row counts in the same snapshot, while pg_dump streams (both only read).
  "${PSQL[@]}" -d "$(db_conn "$db")" -v snap="$snapshot" >"$WORK/count" 2>"$WORK/count.err" <<SQL &
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SET TRANSACTION SNAPSHOT :'snap';
SELECT pg_database_size(current_database()) || ' ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database();
$CONTENTS_SQL
COMMIT;
SQL
  count_pid=$!
  log "step=snapshot db=$db snapshot_at=$snap_at (table locks wait at most $LOCK_TIMEOUT)"

  # Upper bound for the CLI's part-size choice (10,000 parts max): the
  # compressed dump is smaller than the database, plus slack for tiny DBs.
  db_size=$("${PSQL[@]}" -d "$(db_conn "$MAINT_DB")" -v db="$db" <<<"SELECT pg_database_size(:'db')")
  stream_to_s3 "$FINAL/$db.dump" $((db_size + db_size / 10 + 64 * 1024 * 1024)) \
    pg_dump -Fc --compress="$COMPRESS" -w --lock-wait-timeout="$LOCK_TIMEOUT" --snapshot="$snapshot" -d "$(db_conn "$db")"
  wait "$count_pid" || die 1 "cannot count rows in database $db: $(lock_reason "$db" "$WORK/count.err")"
  { read -r db_size owner; read -r contents; } <"$WORK/count"
  to_coproc 'COMMIT;' '\q' || true
  exec {snap_in}>&- {snap_out}<&-
  wait "$SNAP_HOLDER" || true
  SNAP_HOLDER=""
  secs=$(since "$t")
  log "step=dump db=$db bytes=$OUT_BYTES db_size_bytes=$db_size seconds=$secs"
  TOTAL_BYTES=$((TOTAL_BYTES + OUT_BYTES))
  DB_JSON+=("$(printf '{"name": %s, "owner": %s, "key": %s, "size_bytes": %s, "sha256": "%s", "database_size_bytes": %s, "snapshot_at": "%s", "dump_seconds": %s, "contents": %s}' \
    "$(json_str "$db")" "$(json_str "$owner")" "$(json_str "$FINAL/$db.dump")" "$OUT_BYTES" "$OUT_SHA" "$db_size" "$snap_at" "$secs" "$contents")")
done

# --- check every object, then commit with the manifest ----------------------------
# Belt and braces: S3 must hold exactly the objects this run streamed, each
# with exactly the bytes we counted. One LIST, compared by PostgreSQL's JSON
# functions.
# latest.json is read beside the LIST, after the dump: a CLI start during the
# dump competes with pg_dump for CPU, and the conditional write at the end
# proves latest.json did not change since (or reads it again).
t=$(now_us)
start_reading_latest
got=$(aws s3api list-objects-v2 --bucket "$BACKUP_BUCKET" --prefix "$FINAL/" \
  --query 'Contents[].{k: Key, n: Size}' --output json 2>"$WORK/err") \
  || die 1 "cannot list the run's objects under $FINAL/: $(err_of "$WORK/err")"
want=$(IFS=,; printf '[%s]' "${STREAMED_JSON[*]}")
bad=$("${PSQL[@]}" -d "$(db_conn "$MAINT_DB")" -v got="$got" -v want="$want" <<'SQL'
SELECT coalesce(string_agg(format('%s has %s, expected %s', coalesce(w.k, g.k),
                                  coalesce(g.n || ' bytes', 'no object'), coalesce(w.n || ' bytes', 'no object')),
                           '; ' ORDER BY coalesce(w.k, g.k)), '')
FROM jsonb_to_recordset(:'want'::jsonb) w(k text, n bigint)
FULL JOIN jsonb_to_recordset(coalesce(nullif(nullif(btrim(:'got'), ''), 'null'), '[]')::jsonb) g(k text, n bigint)
  ON g.k = w.k
WHERE g.n IS DISTINCT FROM w.n;
SQL
) || die 1 "cannot compare the run's objects (invalid LIST output?)"
[[ -z "$bad" ]] || die 1 "objects in S3 differ from what was streamed: $bad"
log "step=check objects=${#STREAMED_JSON[@]} seconds=$(since "$t")"

t=$(now_us)
read_latest_done
TOOLS=$(printf '{"pg_dump": %s, "pg_dumpall": %s, "aws": %s}' \
  "$(json_str "$(pg_dump --version)")" "$(json_str "$(pg_dumpall --version)")" \
  "$(json_str "$AWS_VERSION")")
FINISHED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
joined=$(IFS=,; printf '%s' "${DB_JSON[*]}")
printf '{"format": 2, "run_id": %s, "started_at": "%s", "finished_at": "%s", "snapshot_at": "%s", "server_version": %s, "dumped_by": %s, "tools": %s, "compression": "%s", "sse": %s, "globals": %s, "databases": [%s]}\n' \
  "$(json_str "$RUN_ID")" "$STARTED_AT" "$FINISHED_AT" "$RUN_SNAPSHOT_AT" "$(json_str "$SERVER_VERSION")" "$(json_str "$DUMPED_BY")" \
  "$TOOLS" "$(compression_name "$COMPRESS")" "$(json_str "$BACKUP_SSE")" "$GLOBALS" "$joined" >"$WORK/manifest.json"
# Refuse to publish a manifest PostgreSQL cannot parse (it is our only JSON writer check).
"${PSQL[@]}" -d "$(db_conn "$MAINT_DB")" -v j="$(<"$WORK/manifest.json")" <<<"SELECT (:'j')::jsonb IS NOT NULL" >/dev/null \
  || die 1 "generated manifest is not valid JSON"
cond=(); [[ -n "$CONDITIONAL" ]] && cond=(--if-none-match '*')
s3_put "$FINAL/manifest.json" "$WORK/manifest.json" application/json "${cond[@]}" \
  || die 1 "cannot write the manifest (run not published): $(err_of "$WORK/put.err")"
COMMITTED=yes
log "step=manifest key=$FINAL/manifest.json snapshot_at=$RUN_SNAPSHOT_AT seconds=$(since "$t")"

# --- latest.json: only forward ------------------------------------------------------
# It names the newest snapshot among complete runs, not the run that finished
# last: two overlapping runs may finish in either order. Compared by
# (snapshot_at, run_id); a latest.json without snapshot_at (older format)
# counts as older. Written with If-Match on the ETag we compared, so a
# concurrent writer makes us re-read and compare again.
t=$(now_us)
printf '{"run_id": %s, "manifest_key": %s, "finished_at": "%s", "snapshot_at": "%s"}\n' \
  "$(json_str "$RUN_ID")" "$(json_str "$FINAL/manifest.json")" "$FINISHED_AT" "$RUN_SNAPSHOT_AT" >"$WORK/latest.json"
# newer_latest: prints the run id in $WORK/latest.cur if it is at least as new as ours.
newer_latest() {
  "${PSQL[@]}" -d "$(db_conn "$MAINT_DB")" -v cur="$(<"$WORK/latest.cur")" -v snap="$RUN_SNAPSHOT_AT" -v run="$RUN_ID" 2>/dev/null <<'SQL'
SELECT c->>'run_id' || ' (snapshot ' || (c->>'snapshot_at') || ')'
FROM (SELECT (:'cur')::jsonb AS c) s
WHERE (c->>'snapshot_at', c->>'run_id') >= (:'snap', :'run');
SQL
}
LATEST_MSG=""
for attempt in 1 2 3 4 5; do
  rc=$LATEST_RC
  ((rc != 1)) || die 1 "run $RUN_ID is complete but latest.json was not updated: cannot read it: $(err_of "$WORK/latest.err")"
  cond=()
  if ((rc == 0)); then
    # An unparsable latest.json is replaced (newer_latest prints nothing).
    newer=$(newer_latest) || newer=""
    if [[ -n "$newer" ]]; then LATEST_MSG="latest.json kept on run $newer: not older than this run"; break; fi
    [[ -n "$CONDITIONAL" ]] && cond=(--if-match "$(<"$WORK/latest.etag")")
  else
    [[ -n "$CONDITIONAL" ]] && cond=(--if-none-match '*')
  fi
  if s3_put "$LATEST_KEY" "$WORK/latest.json" application/json "${cond[@]}"; then
    if [[ -n "$CONDITIONAL" ]]; then LATEST_MSG="latest.json -> $RUN_ID"; break; fi
    # Without conditional writes: read back; a run that overwrote us with an
    # older snapshot in between is overwritten again on the next round.
    read_latest
    if ((LATEST_RC == 0)) && cmp -s "$WORK/latest.cur" "$WORK/latest.json"; then LATEST_MSG="latest.json -> $RUN_ID"; break; fi
    continue
  fi
  put_refused || die 1 "run $RUN_ID is complete but latest.json was not updated: $(err_of "$WORK/put.err")"
  log "latest.json changed while we compared it (attempt $attempt); reading it again"
  read_latest
done
[[ -n "$LATEST_MSG" ]] || die 1 "run $RUN_ID is complete but latest.json was not updated: it kept changing under us"
log "step=latest $LATEST_MSG seconds=$(since "$t")"

OK_MESSAGE="run=$RUN_ID databases=${#DBS[@]} bytes=$TOTAL_BYTES seconds=$(since "$T_RUN") manifest=s3://$BACKUP_BUCKET/$FINAL/manifest.json"
