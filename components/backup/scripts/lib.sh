# shellcheck shell=bash
# Shared helpers for backup.sh, restore.sh and verify.sh. Sourced, never executed.
# These run inside the official postgres image: bash + coreutils + PG client tools
# + the AWS CLI (v2 in the pods; v1 and v2 in the tests). No jq, no python: JSON
# is read with PostgreSQL's own JSON functions and written with printf.

# The CLI v2 pipes output through a pager when it thinks it has a terminal.
export AWS_PAGER=""
# Never wait forever on an unreachable server; never prompt for a password.
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-15}"
# -X: ignore any ~/.psqlrc; -w: never prompt; -At: bare values we can parse.
PSQL=(psql -X -w -q -At -v ON_ERROR_STOP=1)

SCRIPT_NAME=$(basename "$0" .sh)
FAIL_REASON=""   # set by die(); printed on the final FAILED line
OK_MESSAGE=""    # set by the script just before a successful exit
ERR_AT=""        # last failing command seen by the ERR trap (fallback reason)

# Everything goes to stderr so the status line is also the last line of the
# (merged) pod log, whatever the tools print.
exec 1>&2

log() { printf '%s %s: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$SCRIPT_NAME" "$*"; }

# --- supervision: a TERM stops the run within seconds --------------------------
# Bash runs a signal trap only after the foreground command returns, so a TERM
# (Kubernetes deadline, `kubectl delete job`) would wait for a psql or pg_dump
# that may itself be waiting for a lock. So every script runs itself as a
# worker in its own process group and waits for it; on TERM/INT this
# supervisor signals the whole group (psql, pg_dump, aws, tee, ...). The
# worker's trap then cleans up and writes its status line; if that is not done
# within TERM_GRACE_SECONDS, the group is killed. The supervisor prints the
# status line once the worker is gone, so it is always the log's last line
# (after any "Terminated" notice bash prints for a killed child).
TERM_GRACE_SECONDS=${TERM_GRACE_SECONDS:-5}
if [[ -z "${_BACKUP_WORKER:-}" ]]; then
  set +eE   # the caller's `set -e` would end the supervisor at the worker's first non-zero status
  _status=$(mktemp)
  set -m   # the background job below gets its own process group (pgid = its pid)
  _BACKUP_WORKER=1 _BACKUP_STATUS=$_status bash "$0" "$@" &
  _worker=$!
  set +m
  _sig=""
  _forward() {
    [[ -n "$_sig" ]] && return 0
    _sig=$1
    log "received SIG$1: stopping the run and its child processes"
    kill -"$1" -- "-$_worker" 2>/dev/null
    set -m   # the watchdog in its own group too, so killing it takes its sleep along
    { sleep "$TERM_GRACE_SECONDS"; kill -KILL -- "-$_worker" 2>/dev/null; } &
    _watchdog=$!
    disown "$_watchdog"   # no job notice when it is stopped below
    set +m
  }
  trap '_forward TERM' TERM
  trap '_forward INT' INT
  while :; do
    wait "$_worker"; _rc=$?
    kill -0 "$_worker" 2>/dev/null || break   # a trap interrupted the wait: keep waiting
  done
  [[ -n "${_watchdog:-}" ]] && kill -- "-$_watchdog" 2>/dev/null
  if [[ -s "$_status" ]]; then
    cat "$_status"
  elif [[ -n "$_sig" ]]; then
    log "$SCRIPT_NAME FAILED: terminated by SIG$_sig (cleanup did not finish within ${TERM_GRACE_SECONDS}s; killed)"
    _rc=$((128 + $(kill -l "$_sig")))
  else
    log "$SCRIPT_NAME FAILED: exited with status $_rc without a status line"
  fi
  rm -f "$_status"
  exit "$_rc"
fi
# The worker: its own children (verify.sh runs restore.sh) are scripts with their own supervisor.
_STATUS_FILE=${_BACKUP_STATUS:-/dev/stderr}
unset _BACKUP_WORKER _BACKUP_STATUS

# Microsecond clock from bash itself (no awk/bc in the image).
now_us() { local t=${EPOCHREALTIME/[.,]/}; printf '%s' "$((10#$t))"; }
# seconds since $1 (a now_us value), formatted s.mmm
since() { local ms=$((($(now_us) - $1) / 1000)); printf '%d.%03d' $((ms / 1000)) $((ms % 1000)); }

# die CODE MESSAGE: record the reason; the EXIT trap prints it as the last line.
# Never call it inside $(...): the reason would die with the subshell.
die() { FAIL_REASON="$2"; exit "$1"; }

require_env() {
  local v
  for v in "$@"; do
    [[ -n "${!v:-}" ]] || die 2 "missing required environment variable $v"
  done
}

# Each script defines cleanup(); this prints the single status line after it ran.
_finish() {
  local rc=$?
  trap - EXIT ERR
  # Subshells inherit this trap and run it when a TERM ends them (seen: a
  # `$(...)` waiting on its child); only the worker itself cleans up and
  # reports, or a killed run would log "OK" lines.
  [[ "$BASHPID" == "$_WORKER_PID" ]] || exit "$rc"
  trap '' TERM INT   # a second signal must not cut the cleanup short
  set +e
  EXIT_CODE=$rc
  cleanup
  if ((rc == 0)); then
    log "$SCRIPT_NAME OK $OK_MESSAGE" >>"$_STATUS_FILE"
  else
    log "$SCRIPT_NAME FAILED: ${FAIL_REASON:-unexpected error (exit $rc) at ${ERR_AT:-unknown command}}" >>"$_STATUS_FILE"
  fi
  exit "$rc"
}
_on_err() { ERR_AT="line $1: $2 (exit $3)"; }
install_traps() {
  _WORKER_PID=$BASHPID
  trap '_on_err "$LINENO" "$BASH_COMMAND" "$?"' ERR
  trap _finish EXIT
  # The supervisor forwards TERM/INT to this whole process group: the running
  # child dies of it, then this trap runs cleanup.
  trap 'FAIL_REASON="terminated by SIGTERM"; exit 143' TERM
  trap 'FAIL_REASON="terminated by SIGINT"; exit 130' INT
}

# err_of FILE: a tool's stderr as a one-line reason.
err_of() { tr -s '\n ' '  ' <"$1" | sed -E 's/ $//'; }

# --- PostgreSQL sessions -----------------------------------------------------------
# Every session the scripts open gets lock_timeout and statement_timeout (via
# PGOPTIONS), so a lock held by someone else fails the run with a reason
# instead of hanging until the Job's deadline. pg_dump and pg_restore reset
# both for their own sessions (a long COPY is not a hang): pg_dump's table
# locks are bounded by --lock-wait-timeout, and restore.sh builds into a new
# database nobody else holds locks in.
PG_DURATION_RE='^[0-9]+(ms|s|min|h|d)?$'
LOCK_TIMEOUT=${BACKUP_LOCK_TIMEOUT:-1min}
STATEMENT_TIMEOUT=${BACKUP_STATEMENT_TIMEOUT:-2h}
set_timeouts() {
  [[ "$LOCK_TIMEOUT" =~ $PG_DURATION_RE ]] \
    || die 2 "invalid BACKUP_LOCK_TIMEOUT '$LOCK_TIMEOUT' (a PostgreSQL duration such as 30s or 1min; 0 waits forever)"
  [[ "$STATEMENT_TIMEOUT" =~ $PG_DURATION_RE ]] \
    || die 2 "invalid BACKUP_STATEMENT_TIMEOUT '$STATEMENT_TIMEOUT' (a PostgreSQL duration such as 30min or 2h; 0 is no limit)"
  # client_connection_check_interval (PostgreSQL >= 14): a backend whose client
  # was killed (TERM) stops waiting for its lock within seconds.
  export PGOPTIONS="${PGOPTIONS:+$PGOPTIONS }-c lock_timeout=$LOCK_TIMEOUT -c statement_timeout=$STATEMENT_TIMEOUT -c client_connection_check_interval=2s"
}

# db_conn NAME: a libpq connection string naming database NAME. A bare
# `-d NAME` is read as a connection string when NAME contains `=`; quoted
# here, every character is part of the name.
db_conn() {
  local s=${1//\\/\\\\}
  s=${s//\'/\\\'}
  printf "dbname='%s'" "$s"
}

# lock_report DB: who holds an ACCESS EXCLUSIVE table lock in DB (the one mode
# that blocks pg_dump, count(*) and readers), for a failure reason.
lock_report() {
  "${PSQL[@]}" -d "$(db_conn "$1")" 2>/dev/null <<'SQL' || true
SELECT string_agg(format('%s on %s held by pid %s (user %s%s)', l.mode,
                         coalesce(c.oid::regclass::text, 'relation ' || l.relation), l.pid, a.usename,
                         coalesce(', transaction open since ' || to_char(a.xact_start AT TIME ZONE 'UTC', 'HH24:MI:SS') || 'Z', '')),
                  '; ' ORDER BY l.pid)
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid LEFT JOIN pg_class c ON c.oid = l.relation
WHERE l.locktype = 'relation' AND l.granted AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database());
SQL
}

# lock_reason DB ERRFILE: ERRFILE's text, plus the lock holders when it was a lock timeout.
lock_reason() {
  local msg holders
  msg=$(err_of "$2")
  # count(*) reports "lock timeout"; pg_dump's --lock-wait-timeout a statement timeout in LOCK TABLE.
  if [[ "$msg" == *"lock timeout"* || "$msg" == *"LOCK TABLE"* || "$msg" == *"could not obtain lock"* ]]; then
    holders=$(lock_report "$1")
    msg="waited $LOCK_TIMEOUT (lock_timeout) for a table lock: ${holders:-holder already gone}; $msg"
  fi
  printf '%s' "$msg"
}

# --- AWS CLI -----------------------------------------------------------------------
# Bounded memory: `aws s3 cp -` keeps up to ~10 multipart chunks of a stream in
# memory, and raises the chunk size when --expected-size would otherwise need
# more than 10,000 parts. A fixed chunk size and concurrency keep its memory
# flat (measured: README "Backup benchmark"): ~54 MB + 10 chunks. preferred_transfer_client is left
# alone: its values differ between CLI versions, and v2's default picks the
# classic client measured here except on a few EC2 instance families.
# 8 MiB x 10,000 parts = 78 GiB: a stream estimated above that (backup.sh
# estimates from the database's size) gets doubled chunks, the CLI's only way
# to fit S3's part limit, and doubled buffers; components/backup.ts sizes the
# container's memory limit from the database volume for exactly that.
AWS_S3_CHUNK_MB=8
aws_config() {
  [[ -n "${AWS_CONFIG_FILE:-}" ]] && return 0
  export AWS_CONFIG_FILE="$1/aws-config"
  printf '[default]\ns3 =\n  multipart_chunksize = %sMB\n  max_concurrent_requests = 4\n  max_queue_size = 100\n' \
    "$AWS_S3_CHUNK_MB" >"$AWS_CONFIG_FILE"
}

# --- compression -------------------------------------------------------------------
# dump_compression PG_DUMP_MAJOR: pg_dump's --compress value. zstd (pg_dump
# >= 16) at level 3; older pg_dump only has gzip, used at level 1: the default
# level 6 ran at ~18 MB/s of one core, the backup's bottleneck, for a few
# percent smaller dumps. Measurements: README "Backup benchmark".
dump_compression() {
  if (($1 >= 16)); then printf 'zstd:3'; else printf '1'; fi
}
# compression_name VALUE: how the manifest names it.
compression_name() { if [[ "$1" == *:* ]]; then printf '%s' "$1"; else printf 'gzip:%s' "$1"; fi; }
# pg_major TOOL: major version of a PostgreSQL client tool (pg_dump --version).
pg_major() {
  local v; v=$("$1" --version) || return 1
  [[ "$v" =~ \)\ ([0-9]+) ]] || return 1
  printf '%s' "${BASH_REMATCH[1]}"
}

# JSON string literal for a bash value (names only; no control characters expected).
json_str() {
  local s=$1
  s=${s//\\/\\\\}; s=${s//\"/\\\"}; s=${s//$'\n'/\\n}; s=${s//$'\r'/\\r}; s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# json_get DB JSON PATH: extract a text value with PostgreSQL (PATH like '{a,b}').
# Used only for reading our own manifest/pointer.
json_get() {
  "${PSQL[@]}" -d "$1" -v j="$2" -v p="$3" <<'SQL'
SELECT (:'j'::jsonb) #>> (:'p')::text[];
SQL
}

# SQL printing one JSON object: row count of every user table (schema-qualified,
# quote_ident'ed so names are unambiguous) plus the number of large objects.
# Extension member tables are skipped: pg_dump does not dump their rows.
# Shared by backup (inside the exported snapshot) and restore (to compare).
CONTENTS_SQL=$(cat <<'SQL'
SELECT coalesce(string_agg(format('SELECT %L AS t, count(*) AS n FROM %I.%I',
                                  quote_ident(n.nspname) || '.' || quote_ident(c.relname),
                                  n.nspname, c.relname), ' UNION ALL '),
                'SELECT NULL::text AS t, 0::bigint AS n WHERE false') AS count_query
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
\gset
SELECT json_build_object(
  'tables', (SELECT coalesce(json_object_agg(t, n ORDER BY t), '{}') FROM (:count_query) s),
  'large_objects', (SELECT count(*) FROM pg_largeobject_metadata)) AS contents;
SQL
)
