#!/usr/bin/env bash
# Logical backup of PostgreSQL to S3: pg_dump -Fc per database + globals,
# streamed (no local copy) into a per-run staging prefix, checksummed on the
# fly; once every stream succeeded and S3 holds exactly the bytes counted, the
# run is moved under runs/<id>/ and published with a manifest, then
# latest.json. See the README section "Backups".
# AWS CLI start-ups are the fixed cost (~0.4-0.7 s each with CLI v1): one LIST
# checks all staged objects and one recursive move promotes them, instead of
# a HEAD and a move per object.
set -Eeuo pipefail
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

STAGED=()     # staging keys to delete if we fail
STAGED_JSON=() # {"k": key, "n": bytes} of every staged object, for the LIST check
PROMOTED=()   # final keys of this run: useless without a manifest, deleted if we fail
SNAP_HOLDER="" # psql coprocess holding the exported snapshot
WORK=""

cleanup() {
  [[ -n "$SNAP_HOLDER" ]] && kill "$SNAP_HOLDER" 2>/dev/null
  # Kill stray fifo readers (sha256sum/wc) left by an aborted pipeline.
  local j; for j in $(jobs -p); do kill "$j" 2>/dev/null; done
  local k
  for k in "${STAGED[@]}"; do
    # Best effort: the bucket lifecycle rule expires .staging/ anyway.
    aws s3 rm "s3://$BACKUP_BUCKET/$k" --only-show-errors >/dev/null 2>&1 || true
  done
  if ((EXIT_CODE != 0)); then
    for k in "${PROMOTED[@]}"; do
      aws s3 rm "s3://$BACKUP_BUCKET/$k" --only-show-errors >/dev/null 2>&1 || true
    done
  fi
  [[ -n "$WORK" ]] && rm -rf "$WORK"
}
install_traps

require_env PGHOST PGUSER BACKUP_BUCKET BACKUP_PREFIX BACKUP_DATABASES BACKUP_SSE AWS_REGION
case "$BACKUP_SSE" in
  AES256)
    [[ -z "${BACKUP_KMS_KEY_ID:-}" ]] || die 2 "BACKUP_KMS_KEY_ID is only valid with BACKUP_SSE=aws:kms"
    SSE=(--sse AES256) ;;
  aws:kms)
    SSE=(--sse aws:kms)
    [[ -z "${BACKUP_KMS_KEY_ID:-}" ]] || SSE+=(--sse-kms-key-id "$BACKUP_KMS_KEY_ID") ;;
  *) die 2 "invalid BACKUP_SSE '$BACKUP_SSE' (expected aws:kms or AES256)" ;;
esac
BACKUP_PREFIX=${BACKUP_PREFIX%/}
RUN_ID=${BACKUP_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)}
[[ "$RUN_ID" =~ ^[0-9A-Za-z_.-]+$ ]] || die 2 "invalid BACKUP_RUN_ID '$RUN_ID'"
STAGING="$BACKUP_PREFIX/.staging/$RUN_ID"
FINAL="$BACKUP_PREFIX/runs/$RUN_ID"
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
T_RUN=$(now_us)
MAINT_DB=${PGDATABASE:-postgres}
WORK=$(mktemp -d)
# For the manifest; a full CLI start-up, so it runs while we work (killed by
# cleanup if we fail first).
aws --version >"$WORK/aws-version" 2>&1 &
AWS_VERSION_PID=$!

log "run=$RUN_ID bucket=$BACKUP_BUCKET prefix=$BACKUP_PREFIX sse=$BACKUP_SSE host=${PGHOST}:${PGPORT:-5432} user=$PGUSER"

# Fail fast with a clear reason before any dump starts.
t=$(now_us)
SERVER_VERSION=$("${PSQL[@]}" -d "$MAINT_DB" -c 'SHOW server_version' 2>"$WORK/err") \
  || die 1 "cannot connect to PostgreSQL at ${PGHOST}:${PGPORT:-5432} as $PGUSER: $(tr '\n' ' ' <"$WORK/err")"
DUMPED_BY=$("${PSQL[@]}" -d "$MAINT_DB" -c 'SELECT current_user')
log "step=connect server_version=$SERVER_VERSION seconds=$(since "$t")"

t=$(now_us)
aws s3api head-bucket --bucket "$BACKUP_BUCKET" >/dev/null 2>"$WORK/err" \
  || die 1 "S3 bucket $BACKUP_BUCKET not reachable: $(tr '\n' ' ' <"$WORK/err")"
log "step=check-bucket seconds=$(since "$t")"

if [[ "$BACKUP_DATABASES" == all ]]; then
  out=$("${PSQL[@]}" -d "$MAINT_DB" -c \
    "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1") \
    || die 1 "cannot list databases"
  mapfile -t DBS <<<"$out"
else
  read -r -a DBS <<<"$BACKUP_DATABASES"
  for db in "${DBS[@]}"; do
    ok=$("${PSQL[@]}" -d "$MAINT_DB" -v db="$db" <<<"SELECT count(*) FROM pg_database WHERE datname = :'db' AND datallowconn")
    [[ "$ok" == 1 ]] || die 2 "invalid BACKUP_DATABASES: database '$db' does not exist or does not allow connections"
  done
fi
((${#DBS[@]} > 0)) || die 2 "invalid BACKUP_DATABASES: no databases to back up"

# stream_to_s3 KEY EXPECTED_SIZE CMD...: run CMD, stream its stdout to the
# staging KEY while sha256sum and wc read a copy through fifos (nothing is
# buffered in memory or on disk). Sets OUT_BYTES and OUT_SHA.
# `aws s3 cp -` completes the upload on EOF even when CMD died, so every
# pipeline member's status is checked and the object stays in staging until
# check_staged has seen it with exactly OUT_BYTES bytes and promote_run moves it.
stream_to_s3() {
  local key=$1 size=$2; shift 2
  local shaf="$WORK/sha.fifo" cntf="$WORK/cnt.fifo" st pst sha_pid cnt_pid sha_rc=0 cnt_rc=0
  rm -f "$shaf" "$cntf"; mkfifo "$shaf" "$cntf"
  sha256sum <"$shaf" >"$WORK/sha" & sha_pid=$!
  wc -c <"$cntf" >"$WORK/cnt" & cnt_pid=$!
  STAGED+=("$key")
  "$@" | tee "$shaf" "$cntf" \
    | aws s3 cp - "s3://$BACKUP_BUCKET/$key" --only-show-errors --expected-size "$size" "${SSE[@]}" \
    && pst=("${PIPESTATUS[@]}") || pst=("${PIPESTATUS[@]}")
  wait "$sha_pid" || sha_rc=$?
  wait "$cnt_pid" || cnt_rc=$?
  st="$1=${pst[0]} tee=${pst[1]} aws-upload=${pst[2]} sha256sum=$sha_rc wc=$cnt_rc"
  [[ "${pst[*]} $sha_rc $cnt_rc" =~ ^[0\ ]+$ ]] || die 1 "stream of $key failed ($st)"
  OUT_BYTES=$(<"$WORK/cnt"); OUT_SHA=$(cut -d' ' -f1 <"$WORK/sha")
  [[ "$OUT_BYTES" =~ ^[0-9]+$ ]] && ((OUT_BYTES > 0)) || die 1 "stream of $key produced no data ($st)"
  [[ "$OUT_SHA" =~ ^[0-9a-f]{64}$ ]] || die 1 "no sha256 for $key"
  STAGED_JSON+=("$(printf '{"k": %s, "n": %s}' "$(json_str "$key")" "$OUT_BYTES")")
}

# check_staged: belt and braces, before anything is promoted: S3 must hold
# exactly the objects this run streamed under its staging prefix, each with
# exactly the bytes we counted. One LIST (compared by PostgreSQL's JSON
# functions) instead of a HEAD per object.
check_staged() {
  local got want bad
  got=$(aws s3api list-objects-v2 --bucket "$BACKUP_BUCKET" --prefix "$STAGING/" \
    --query 'Contents[].{k: Key, n: Size}' --output json 2>"$WORK/err") \
    || die 1 "cannot list staged objects under $STAGING/: $(tr '\n' ' ' <"$WORK/err")"
  want=$(IFS=,; printf '[%s]' "${STAGED_JSON[*]}")
  bad=$("${PSQL[@]}" -d "$MAINT_DB" -v got="$got" -v want="$want" <<'SQL'
SELECT coalesce(string_agg(format('%s has %s, expected %s', coalesce(w.k, g.k),
                                  coalesce(g.n || ' bytes', 'no object'), coalesce(w.n || ' bytes', 'no object')),
                           '; ' ORDER BY coalesce(w.k, g.k)), '')
FROM jsonb_to_recordset(:'want'::jsonb) w(k text, n bigint)
FULL JOIN jsonb_to_recordset(coalesce(nullif(nullif(btrim(:'got'), ''), 'null'), '[]')::jsonb) g(k text, n bigint)
  ON g.k = w.k
WHERE g.n IS DISTINCT FROM w.n;
SQL
  ) || die 1 "cannot compare staged objects (invalid LIST output?)"
  [[ -z "$bad" ]] || die 1 "staged objects differ from what was streamed: $bad"
}

# promote_run: move this run's whole staging prefix to its final prefix in one
# CLI call (server-side copies, multipart for >5 GB, + deletes). On failure
# some objects may be in either place: cleanup deletes both.
promote_run() {
  local k
  for k in "${STAGED[@]}"; do PROMOTED+=("$FINAL/${k#"$STAGING/"}"); done
  aws s3 mv --recursive "s3://$BACKUP_BUCKET/$STAGING/" "s3://$BACKUP_BUCKET/$FINAL/" --only-show-errors "${SSE[@]}" \
    2>"$WORK/err" || die 1 "cannot move $STAGING/ to $FINAL/: $(tr '\n' ' ' <"$WORK/err")"
  STAGED=()
}

# --- globals (roles, memberships, role settings; tablespaces) -------------
# --no-role-passwords: the backup role cannot read pg_authid. Passwords are
# re-set from the Kubernetes Secrets after a restore (init-db.sh / restore docs).
t=$(now_us)
stream_to_s3 "$STAGING/globals.sql" $((64 * 1024 * 1024)) pg_dumpall --globals-only --no-role-passwords -l "$MAINT_DB"
GLOBALS=$(printf '{"key": %s, "size_bytes": %s, "sha256": "%s"}' "$(json_str "$FINAL/globals.sql")" "$OUT_BYTES" "$OUT_SHA")
log "step=globals bytes=$OUT_BYTES seconds=$(since "$t")"

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
TOTAL_BYTES=$OUT_BYTES
for db in "${DBS[@]}"; do
  t=$(now_us)
  # Hold a REPEATABLE READ transaction open and export its snapshot so the row
  # counts in the manifest describe exactly the data pg_dump writes.
  coproc SNAP { exec "${PSQL[@]}" -d "$db" 2>&1; }
  SNAP_HOLDER=$!
  snap_in=${SNAP[1]:-}; snap_out=${SNAP[0]:-}
  snapshot=""
  if [[ -n "$snap_in" ]] && to_coproc 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;' \
      'SELECT pg_export_snapshot();'; then
    read -r -t 60 snapshot <&"$snap_out" || true
  fi
  [[ "$snapshot" =~ ^[0-9A-F]+-[0-9A-F]+-[0-9]+$ ]] || die 1 "cannot export snapshot in database $db: ${snapshot:-no answer}"

  info=$("${PSQL[@]}" -d "$db" -v snap="$snapshot" <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SET TRANSACTION SNAPSHOT :'snap';
SELECT pg_database_size(current_database()) || ' ' || pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database();
$CONTENTS_SQL
COMMIT;
SQL
  ) || die 1 "cannot count rows in database $db"
  { read -r db_size owner; read -r contents; } <<<"$info"
  log "step=count db=$db db_size_bytes=$db_size seconds=$(since "$t")"

  # Upper bound for the CLI's part-size choice (10,000 parts max): the
  # compressed dump is smaller than the database, plus slack for tiny DBs.
  t=$(now_us)
  stream_to_s3 "$STAGING/$db.dump" $((db_size + db_size / 10 + 64 * 1024 * 1024)) \
    pg_dump -Fc -w --snapshot="$snapshot" -d "$db"
  to_coproc 'COMMIT;' '\q' || true
  exec {snap_in}>&- {snap_out}<&-
  wait "$SNAP_HOLDER" || true
  SNAP_HOLDER=""
  secs=$(since "$t")
  log "step=dump db=$db bytes=$OUT_BYTES seconds=$secs"
  TOTAL_BYTES=$((TOTAL_BYTES + OUT_BYTES))
  DB_JSON+=("$(printf '{"name": %s, "owner": %s, "key": %s, "size_bytes": %s, "sha256": "%s", "database_size_bytes": %s, "dump_seconds": %s, "contents": %s}' \
    "$(json_str "$db")" "$(json_str "$owner")" "$(json_str "$FINAL/$db.dump")" "$OUT_BYTES" "$OUT_SHA" "$db_size" "$secs" "$contents")")
done

# --- check and promote every object, then the manifest, then the pointer ----
t=$(now_us)
check_staged
promote_run
log "step=promote objects=${#PROMOTED[@]} seconds=$(since "$t")"

t=$(now_us)
wait "$AWS_VERSION_PID" || true
TOOLS=$(printf '{"pg_dump": %s, "pg_dumpall": %s, "aws": %s}' \
  "$(json_str "$(pg_dump --version)")" "$(json_str "$(pg_dumpall --version)")" \
  "$(json_str "$(head -n1 "$WORK/aws-version")")")
FINISHED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
joined=$(IFS=,; printf '%s' "${DB_JSON[*]}")
printf '{"format": 1, "run_id": %s, "started_at": "%s", "finished_at": "%s", "server_version": %s, "dumped_by": %s, "tools": %s, "sse": %s, "globals": %s, "databases": [%s]}\n' \
  "$(json_str "$RUN_ID")" "$STARTED_AT" "$FINISHED_AT" "$(json_str "$SERVER_VERSION")" "$(json_str "$DUMPED_BY")" \
  "$TOOLS" "$(json_str "$BACKUP_SSE")" "$GLOBALS" "$joined" >"$WORK/manifest.json"
# Refuse to publish a manifest PostgreSQL cannot parse (it is our only JSON writer check).
"${PSQL[@]}" -d "$MAINT_DB" -v j="$(<"$WORK/manifest.json")" <<<"SELECT (:'j')::jsonb IS NOT NULL" >/dev/null \
  || die 1 "generated manifest is not valid JSON"
aws s3 cp "$WORK/manifest.json" "s3://$BACKUP_BUCKET/$FINAL/manifest.json" --only-show-errors \
  --content-type application/json "${SSE[@]}" || die 1 "cannot upload manifest"
printf '{"run_id": %s, "manifest_key": %s, "finished_at": "%s"}\n' \
  "$(json_str "$RUN_ID")" "$(json_str "$FINAL/manifest.json")" "$FINISHED_AT" >"$WORK/latest.json"
aws s3 cp "$WORK/latest.json" "s3://$BACKUP_BUCKET/$BACKUP_PREFIX/latest.json" --only-show-errors \
  --content-type application/json "${SSE[@]}" || die 1 "cannot update latest.json"
log "step=manifest key=$FINAL/manifest.json seconds=$(since "$t")"

OK_MESSAGE="run=$RUN_ID databases=${#DBS[@]} bytes=$TOTAL_BYTES seconds=$(since "$T_RUN") manifest=s3://$BACKUP_BUCKET/$FINAL/manifest.json"
